//! `auction`: an active agent. `open SECS` opens it for bids and sets a
//! reminder that closes it SECS seconds later; `bid NAME AMOUNT` bids
//! (replies `leading` or `outbid: best is AMOUNT`); when the reminder's
//! `close` arrives the auction closes and replies `sold to NAME for AMOUNT`
//! (or `no bids`); `get` replies with where it stands. Only the reminder
//! can close it: a `close` from anyone else is refused.

use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Auction {
    open: bool,
    closed: bool,
    /// The best bid: bidder and amount.
    best: Option<(String, u64)>,
    bids: u64,
    /// How many times a `close` was applied (1 once closed: the reminder
    /// fires exactly once).
    closes: u64,
}

impl Auction {
    fn standing(&self) -> String {
        match (&self.best, self.closed) {
            (Some((who, amount)), true) => format!("sold to {who} for {amount}"),
            (None, true) => "no bids".to_owned(),
            (Some((who, amount)), false) => format!("open: {who} leads with {amount}"),
            (None, false) if self.open => "open: no bids yet".to_owned(),
            (None, false) => "not open".to_owned(),
        }
    }
}

fn main() {
    orb_guest::actor::<Auction, String, _, _>(|auction, message, ctx, effects| {
        let words: Vec<&str> = message.split_whitespace().collect();
        match words.as_slice() {
            ["open", secs] => {
                if auction.open || auction.closed {
                    return Err("the auction was opened already".to_owned());
                }
                let secs: u64 = secs
                    .parse()
                    .map_err(|_| format!("open SECS, not {secs:?}"))?;
                auction.open = true;
                effects.remind("deadline", std::time::Duration::from_secs(secs), "close");
                Ok(format!("open for {secs} s"))
            }
            ["bid", who, amount] => {
                let amount: u64 = amount
                    .parse()
                    .map_err(|_| format!("bid NAME AMOUNT, not {amount:?}"))?;
                if !auction.open {
                    return Ok(format!("refused: {}", auction.standing()));
                }
                auction.bids += 1;
                match &auction.best {
                    Some((_, best)) if *best >= amount => Ok(format!("outbid: best is {best}")),
                    _ => {
                        auction.best = Some(((*who).to_owned(), amount));
                        Ok("leading".to_owned())
                    }
                }
            }
            ["close"] if ctx.sender == ctx.agent => {
                auction.closes += 1;
                auction.open = false;
                auction.closed = true;
                Ok(auction.standing())
            }
            ["close"] => Err("only the auction's deadline closes it".to_owned()),
            ["get"] => Ok(auction.standing()),
            _ => Err(format!("unknown message {message:?}")),
        }
    });
}
