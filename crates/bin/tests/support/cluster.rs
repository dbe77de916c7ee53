//! The end-to-end tests' cluster: the binaries' own launcher.

#![allow(unused_imports)]

pub use tiox_bin::launch::*;
