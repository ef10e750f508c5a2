//! Exit codes, and the error carrying one. Scripts branch on these, so they never change.

pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const NO_UPDATE: i32 = 3;
/// A signature, hash or archive did not verify.
pub const VERIFY: i32 = 4;
pub const UNREACHABLE: i32 = 5;
pub const REFUSED: i32 = 6;

/// An error with a chosen exit code.
#[derive(Debug)]
pub struct Coded {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

pub fn coded(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded { code, message: message.into() })
}

pub fn code_of(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Coded>().map_or(FAILURE, |c| c.code)
}
