//! Wire definitions shared by every component.
//!
//! Our own `.proto` files, wire-compatible with TiKV's kvproto for exactly the
//! messages and RPCs tiox implements (same packages, names and field numbers),
//! so that unmodified TiKV clients interoperate. Generated code lands here once
//! the PD and TiKV services exist (issues 3 and 4).
