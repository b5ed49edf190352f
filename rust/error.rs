//! Errors the kernels report instead of panicking.
//!
//! Every check on user-controlled sizes happens before any work and returns a
//! [`KernelError`]; the bindings turn it into a Python `ValueError` subclass
//! (`diy_nn.ShapeError`) whose message names the op, the argument, what was
//! expected and what was given.

/// Why a kernel refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// An argument has the wrong shape.
    #[error("{op}: {arg} must have shape {expected}, got {actual}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        expected: String,
        actual: String,
    },
    /// An argument has an invalid value (stride 0, kernel larger than input, ...).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

impl KernelError {
    /// A shape mismatch on `arg` of `op`.
    pub fn shape(
        op: &'static str,
        arg: &'static str,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        KernelError::Shape {
            op,
            arg,
            expected: expected.into(),
            actual: actual.into(),
        }
    }

    /// An invalid argument value.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        KernelError::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

/// Refuses an array of shape `dims` (elements of at most 8 bytes) that could not
/// be allocated: its size overflows, or the allocator says no. Called before
/// any work, so that a huge size gives an error instead of an abort.
pub fn check_alloc(op: &'static str, what: &str, dims: &[usize]) -> Result<(), KernelError> {
    // Below 1 GiB, assume the allocation succeeds.
    const PROBE_FROM: usize = 1 << 30;
    // ndarray also refuses shapes whose non-zero axes overflow, empty or not.
    let nonzero = dims
        .iter()
        .try_fold(8usize, |a, &d| a.checked_mul(d.max(1)));
    let bytes = nonzero
        .filter(|&b| b <= isize::MAX as usize)
        .map(|_| dims.iter().product::<usize>() * 8);
    let ok = bytes.is_some_and(|b| b < PROBE_FROM || Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if !ok {
        let shape = fmt_shape(dims);
        let why = format!("{what} of shape {shape} is too large to allocate");
        return Err(KernelError::invalid(op, why));
    }
    Ok(())
}

/// Asserts that `r` is an error whose message contains `text` (for the tests).
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_err<T>(r: Result<T, KernelError>, text: &str) {
    match r {
        Ok(_) => panic!("no error, expected one with {text:?}"),
        Err(e) => assert!(e.to_string().contains(text), "{e}"),
    }
}

/// Formats a shape as numpy does: `(3, 4)`, `(5,)`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let comma = if shape.len() == 1 { "," } else { "" };
    format!("({}{comma})", dims.join(", "))
}
