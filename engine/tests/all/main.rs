//! Integration tests of `orb-engine`, one module per guarantee.

mod call;
mod persist;
mod shutdown;
mod table;

use std::cell::RefCell;
use std::rc::Rc;

/// A vector shared between a dataflow's closures and the worker's closure.
pub type Shared<T> = Rc<RefCell<Vec<T>>>;

/// Two handles on one new [`Shared`] vector.
pub fn shared<T>() -> (Shared<T>, Shared<T>) {
    let v = Rc::new(RefCell::new(Vec::new()));
    (v.clone(), v)
}
