//! The settlement journal: every settlement this node signs is written to
//! its database (the `unsettled` tree) before the call it settles is
//! answered, and forgotten once a committed block holds it (the chain is
//! swept every few seconds). A node killed
//! after answering a call queues the settlement again when it restarts, so
//! what a caller was answered is paid for even if the node died before the
//! settlement reached a block; the ledger settles an invocation once, so
//! queueing it again cannot pay twice.
//!
//! Written means in the database file (sled's flush): it survives the
//! process being killed. A power cut may lose the last settlements written,
//! as it may any of the node's state outside the chain (the chain itself
//! fsyncs every commit).

use orb_ledger::{PublicKey, Settlement, State};

/// The node's settlements not yet seen in a committed block.
#[derive(Clone)]
pub(crate) struct Journal {
    db: sled::Db,
    tree: sled::Tree,
}

impl Journal {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree("unsettled")?,
        })
    }

    /// Writes `settlement` to the database file.
    pub(crate) async fn keep(&self, settlement: &Settlement) -> Result<(), sled::Error> {
        self.tree.insert(
            settlement.body.invocation.to_be_bytes(),
            orb_ledger::encode(settlement),
        )?;
        self.db.flush_async().await.map(|_| ())
    }

    /// Forgets the settlements the chain holds, and returns the others: at
    /// a start, what is owed and queued again. `settled` answers, for this
    /// node's invocations, which ones the chain holds; it is called once,
    /// after the journal was read, so the caller holds the chain only for
    /// that. An entry that does not decode is dropped (and listed in the
    /// errors), never a reason not to start.
    pub(crate) fn sweep(
        &self,
        me: &PublicKey,
        settled: impl FnOnce(&[u128]) -> Vec<bool>,
    ) -> (Vec<Settlement>, Vec<String>) {
        let (mut mine, mut forget, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for entry in self.tree.iter() {
            let (key, value) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match orb_ledger::decode::<Settlement>(&value) {
                Ok(s) if &s.body.invoker == me => mine.push((key, s)),
                Ok(_) => forget.push(key),
                Err(e) => {
                    errors.push(format!("an unreadable settlement: {e}"));
                    forget.push(key);
                }
            }
        }
        let ids: Vec<u128> = mine.iter().map(|(_, s)| s.body.invocation).collect();
        let flags = settled(&ids);
        let mut owed = Vec::new();
        for ((key, s), done) in mine.into_iter().zip(flags) {
            if done {
                forget.push(key);
            } else {
                owed.push(s);
            }
        }
        for key in forget {
            let _ = self.tree.remove(key);
        }
        (owed, errors)
    }

    /// Which of `me`'s `invocations` `state` holds settled.
    pub(crate) fn settled_in(state: &State, me: &PublicKey, invocations: &[u128]) -> Vec<bool> {
        invocations
            .iter()
            .map(|i| state.is_settled(me, *i))
            .collect()
    }

    /// Settlements written and not yet seen committed.
    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }
}
