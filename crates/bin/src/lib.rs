//! Shared code of the tiox binaries: launching clusters of real processes
//! (for the playground, the benchmarks and the end-to-end tests).

pub mod launch;
