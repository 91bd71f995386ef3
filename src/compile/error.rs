//! Compile errors: [`CompileError`] (the JSON path and what is wrong there), the helper
//! every phase returns them with, and the "did you mean" hint for a misspelt key.

use std::fmt;

/// A compile error: where in the JSON, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The JSON path, e.g. `states.running.on.STOP[1].target` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CompileError {}

pub(super) fn err<T>(path: &str, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        path: path.to_string(),
        message: message.into(),
    })
}

pub(super) fn suggest<'a>(
    word: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    options
        .into_iter()
        .map(|o| (distance(word, o), o))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, o)| o)
}
