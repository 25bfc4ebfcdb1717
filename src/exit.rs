//! How a command's failure becomes an exit code (documented in `orb --help`).

use orb_functions::Error as FnError;

/// Exit code for usage and input errors (clap uses it for bad flags too).
pub(crate) const USAGE: u8 = 2;
/// Exit code for a guest that failed.
pub(crate) const GUEST: u8 = 3;
/// Exit code for network failures: node unreachable, no provider, all providers failed.
pub(crate) const NETWORK: u8 = 4;
/// Exit code for everything else.
pub(crate) const INTERNAL: u8 = 1;
/// Exit code of a check that found something wrong (`orb ledger audit`,
/// `verify-proof`, `consistency`): the same number as [`INTERNAL`], as
/// `diff` and `cmp` use 1 for "different" and 2 for "could not compare".
pub(crate) const CHECK_FAILED: u8 = 1;

/// A failed command: the message to print and the code to exit with.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl CliError {
    /// A usage or input error.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: USAGE,
            error: error.into(),
        }
    }

    /// A network failure: the node unreachable, a stream cut.
    pub(crate) fn network(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: NETWORK,
            error: error.into(),
        }
    }
}

/// The exit code an `orb-functions` error deserves.
pub(crate) fn code_of(e: &FnError) -> u8 {
    if e.is_guest_failure() {
        GUEST
    } else if e.is_module_rejected()
        || matches!(
            e,
            FnError::LimitTooHigh { .. }
                | FnError::InvalidFunctionId(_)
                | FnError::InvalidRequest(_)
        )
    {
        USAGE
    } else {
        INTERNAL
    }
}

impl From<FnError> for CliError {
    fn from(e: FnError) -> Self {
        Self {
            code: code_of(&e),
            error: e.into(),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        let code = error.downcast_ref::<FnError>().map_or(INTERNAL, code_of);
        Self { code, error }
    }
}

/// Stdout failed: a closed pipe ends the process quietly (exit 0, like
/// SIGPIPE for other tools); anything else is an internal error.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(i32::from(INTERNAL));
}

impl From<orb_net::Error> for CliError {
    fn from(error: orb_net::Error) -> Self {
        Self {
            code: INTERNAL,
            error: error.into(),
        }
    }
}

impl From<orb_engine::Error> for CliError {
    fn from(error: orb_engine::Error) -> Self {
        Self {
            code: INTERNAL,
            error: error.into(),
        }
    }
}

impl From<orb::Error> for CliError {
    fn from(error: orb::Error) -> Self {
        let code = match &error {
            e if e.is_usage() => USAGE,
            orb::Error::Functions(e) => code_of(e),
            _ => INTERNAL,
        };
        Self {
            code,
            error: error.into(),
        }
    }
}
