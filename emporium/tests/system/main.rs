//! The `emporium` binary tested as a whole, the way operators and new users meet it: one
//! integration binary (one link step) with a module per concern.

mod deadletter;
mod faults;
mod one_address;
mod up;
