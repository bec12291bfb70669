//! Integration tests: the real binary over real HTTP on 127.0.0.1 against the sandbox, reading
//! the Parquet output back and comparing it with the source rows. One binary, a module per theme.

mod export;
mod util;
