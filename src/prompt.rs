//! Reading passwords: from the terminal without echo, or one line from standard input for
//! scripts (`--password-stdin`). Shared by `ftpd adduser/passwd` and `ftpc login`.

use std::io::{self, BufRead};

/// Reads one password line from standard input (the trailing newline is not part of it).
///
/// # Errors
/// I/O errors, or empty input.
pub fn password_from_stdin() -> io::Result<String> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no password on standard input",
        ));
    }
    Ok(password.to_owned())
}

/// Asks for a password on the terminal, without echo.
///
/// # Errors
/// No terminal (suggests `--password-stdin`), or I/O errors.
pub fn password_from_terminal(prompt: &str) -> io::Result<String> {
    rpassword::prompt_password(prompt).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read a password from the terminal ({e}); use --password-stdin"),
        )
    })
}

/// A password for login: from stdin, or asked once on the terminal.
///
/// # Errors
/// As [`password_from_stdin`] and [`password_from_terminal`].
pub fn login_password(prompt: &str, from_stdin: bool) -> io::Result<String> {
    if from_stdin {
        password_from_stdin()
    } else {
        password_from_terminal(prompt)
    }
}

/// A new password: from stdin, or asked twice on the terminal, which must agree.
///
/// # Errors
/// As [`login_password`], or the two entries differ.
pub fn new_password(name: &str, from_stdin: bool) -> io::Result<String> {
    if from_stdin {
        return password_from_stdin();
    }
    let first = password_from_terminal(&format!("New password for {name}: "))?;
    let second = password_from_terminal(&format!("Retype the password for {name}: "))?;
    if first != second {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the passwords do not match",
        ));
    }
    Ok(first)
}
