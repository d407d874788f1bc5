//! Remote paths: `/`-separated UTF-8, relative to the user's home (a leading `/` means the
//! home). Parsed and normalised here, before anything reaches storage; the storage jail then
//! resolves them beneath the home, so symlinks cannot lead out either.

use std::fmt;
use std::path::PathBuf;

use crate::error::PathError;

/// Longest remote path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Most components a remote path may have, and so the deepest a tree in a home can grow:
/// deep enough for any real tree, shallow enough that a walk over it holds few descriptors
/// and a user cannot build a tree that exhausts the server's stack or descriptors.
pub const MAX_DEPTH: usize = 128;

/// Partial transfers (server uploads, client downloads) live beside their target under a
/// hidden name starting with this; the server neither lists nor serves such names.
pub const PARTIAL_PREFIX: &str = ".ftprep-part-";

/// The hidden name of the partial transfer for a file named `target`: a fixed length, so
/// that every target name fits, and the same for the same name, so a resume finds it.
pub fn partial_name(target: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(target.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PARTIAL_PREFIX}{hex}")
}

/// True for one plain name as a listing may hold it: not empty, not `.` or `..`, no `/`,
/// no NUL. Anything else in a listing is a server trying to reach outside the directory.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A validated path below (or at) a user's home: no NUL, no empty component, and `..` never
/// climbs above the home.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotePath {
    components: Vec<String>,
}

impl RemotePath {
    /// Parses and normalises a remote path. `""`, `"/"` and `"."` are the home itself;
    /// one trailing `/` is allowed (`dir/`).
    ///
    /// # Errors
    /// [`PathError`] for NUL bytes, empty components, `..` above the home, or excess length.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(MAX_PATH_LEN));
        }
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        let trimmed = raw.strip_prefix('/').unwrap_or(raw);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let mut components: Vec<String> = Vec::new();
        if trimmed.is_empty() {
            return Ok(RemotePath { components });
        }
        for part in trimmed.split('/') {
            match part {
                "" => return Err(PathError::EmptyComponent),
                "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(PathError::Escapes);
                    }
                }
                name => components.push(name.to_owned()),
            }
        }
        if components.len() > MAX_DEPTH {
            return Err(PathError::TooDeep(MAX_DEPTH));
        }
        Ok(RemotePath { components })
    }

    /// True for the home directory itself.
    pub fn is_home(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The parent directory (the home for a top-level name, and for the home itself).
    pub fn parent(&self) -> RemotePath {
        let mut components = self.components.clone();
        components.pop();
        RemotePath { components }
    }

    /// How many levels below the home this is (0 for the home).
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// This path with `name` appended (`name` must be one valid component).
    ///
    /// # Errors
    /// [`PathError`] if `name` is not a single plain component.
    pub fn join(&self, name: &str) -> Result<RemotePath, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::EmptyComponent);
        }
        if name.contains('\0') {
            return Err(PathError::Nul);
        }
        if self.components.len() >= MAX_DEPTH {
            return Err(PathError::TooDeep(MAX_DEPTH));
        }
        let mut components = self.components.clone();
        components.push(name.to_owned());
        Ok(RemotePath { components })
    }

    /// True if `other` is this path or lies beneath it.
    pub fn contains(&self, other: &RemotePath) -> bool {
        other.components.starts_with(&self.components)
    }

    /// Checks that a symbolic link here to `target` leads to a place inside the home: a
    /// relative target, read from this path's directory, that never climbs above the home.
    /// What is there (or whether anything is) does not matter: the jail still resolves
    /// every path beneath the home.
    ///
    /// # Errors
    /// [`PathError::Escapes`] for an absolute target or one that climbs out; the others as
    /// for [`RemotePath::parse`].
    pub fn check_link_target(&self, target: &str) -> Result<(), PathError> {
        if target.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(MAX_PATH_LEN));
        }
        if target.contains('\0') {
            return Err(PathError::Nul);
        }
        if target.is_empty() {
            return Err(PathError::EmptyComponent);
        }
        if target.starts_with('/') {
            return Err(PathError::Escapes);
        }
        let mut depth = self.depth().saturating_sub(1);
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => depth = depth.checked_sub(1).ok_or(PathError::Escapes)?,
                _ => depth += 1,
            }
            if depth > MAX_DEPTH {
                return Err(PathError::TooDeep(MAX_DEPTH));
            }
        }
        Ok(())
    }

    /// The path relative to the home, as the storage jail takes it (`.` for the home).
    pub fn to_relative(&self) -> PathBuf {
        if self.is_home() {
            PathBuf::from(".")
        } else {
            self.components.iter().collect()
        }
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.components.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        RemotePath::parse(raw).unwrap().to_string()
    }

    #[test]
    fn plain_names() {
        for good in ["a", "notes.txt", ".hidden", "...", "a b", "é"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../../.bash_profile", "a/b", "/etc", "a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn normalises() {
        assert_eq!(ok(""), "/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("."), "/");
        assert_eq!(ok("a/b"), "/a/b");
        assert_eq!(ok("/a/b/"), "/a/b");
        assert_eq!(ok("a/./b/../c"), "/a/c");
        assert_eq!(ok("a/.."), "/");
        assert!(RemotePath::parse("a/..").unwrap().is_home());
        assert_eq!(
            RemotePath::parse("a/b").unwrap().to_relative(),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn refuses_escapes_nul_and_empty_components() {
        for raw in ["..", "../escape", "/../x", "a/../../x", "./.."] {
            assert!(
                matches!(RemotePath::parse(raw), Err(PathError::Escapes)),
                "{raw}"
            );
        }
        assert!(matches!(RemotePath::parse("a\0b"), Err(PathError::Nul)));
        for raw in ["a//b", "//a", "a/b//"] {
            assert!(
                matches!(RemotePath::parse(raw), Err(PathError::EmptyComponent)),
                "{raw}"
            );
        }
        assert!(matches!(
            RemotePath::parse(&"a/".repeat(3000)),
            Err(PathError::TooLong(_))
        ));
        let deepest = "a/".repeat(MAX_DEPTH);
        assert_eq!(RemotePath::parse(&deepest).unwrap().depth(), MAX_DEPTH);
        assert!(matches!(
            RemotePath::parse(&format!("{deepest}b")),
            Err(PathError::TooDeep(MAX_DEPTH))
        ));
        // `..` is applied first: only the depth reached counts.
        assert!(RemotePath::parse(&format!("{deepest}b/..")).is_ok());
        let at_limit = RemotePath::parse(&deepest).unwrap();
        assert!(matches!(at_limit.join("b"), Err(PathError::TooDeep(_))));
    }

    /// Issue 27.19: mutants of `join`, `contains`, `parent` and the length limit lived;
    /// each check has a case of its own here.
    #[test]
    fn join_takes_one_plain_component_only() {
        let home = RemotePath::default();
        for bad in ["", ".", "..", "a/b", "/"] {
            assert!(
                matches!(home.join(bad), Err(PathError::EmptyComponent)),
                "{bad:?}"
            );
        }
        assert!(matches!(home.join("a\0b"), Err(PathError::Nul)));
        for good in ["a", "...", ".hidden", "a b"] {
            assert_eq!(home.join(good).unwrap().to_string(), format!("/{good}"));
        }
        let a = home.join("a").unwrap();
        assert_eq!(a.join("b").unwrap().components(), ["a", "b"]);
        assert_eq!(a.join("b").unwrap().depth(), 2);
    }

    #[test]
    fn contains_is_this_path_or_beneath_it() {
        let path = |raw: &str| RemotePath::parse(raw).unwrap();
        assert!(path("a").contains(&path("a")));
        assert!(path("a").contains(&path("a/b/c")));
        assert!(path("").contains(&path("x")));
        assert!(!path("a/b").contains(&path("a")));
        assert!(!path("a").contains(&path("ab")));
        assert!(!path("a").contains(&path("b/a")));
    }

    #[test]
    fn parents_names_and_the_home() {
        let path = |raw: &str| RemotePath::parse(raw).unwrap();
        assert_eq!(path("a/b/c").parent(), path("a/b"));
        assert_eq!(path("a").parent(), path(""));
        assert!(path("").parent().is_home());
        assert!(!path("a").is_home());
        assert_eq!(path("a/b").file_name(), Some("b"));
        assert_eq!(path("").file_name(), None);
        assert_eq!(path("").to_relative(), PathBuf::from("."));
    }

    /// The partial file's name: hidden behind the prefix, one fixed length whatever the
    /// target's, the same for the same target (a resume finds it), another for another.
    #[test]
    fn partial_names_are_hidden_fixed_and_per_target() {
        let short = partial_name("a");
        let long = partial_name(&"n".repeat(255));
        for name in [&short, &long] {
            assert!(name.starts_with(PARTIAL_PREFIX), "{name}");
            assert_eq!(name.len(), PARTIAL_PREFIX.len() + 32, "{name}");
            assert!(
                name[PARTIAL_PREFIX.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit())
            );
        }
        assert_eq!(partial_name("a"), short);
        assert_ne!(short, long);
        assert_ne!(partial_name("b"), short);
    }

    /// Issue 28 (sync -l): a link the server makes must point inside the home.
    #[test]
    fn link_targets_stay_inside_the_home() {
        let top = RemotePath::parse("link").unwrap();
        let deep = RemotePath::parse("a/b/link").unwrap();
        for fine in ["file", "dir/file", "./file", "dir/../file", "a//b/"] {
            assert_eq!(top.check_link_target(fine), Ok(()), "{fine}");
        }
        assert_eq!(deep.check_link_target("../../file"), Ok(()));
        assert_eq!(deep.check_link_target("../x/../../y"), Ok(()));
        for escapes in ["..", "../x", "/etc/passwd", "dir/../../x", "/"] {
            assert_eq!(
                top.check_link_target(escapes),
                Err(PathError::Escapes),
                "{escapes}"
            );
        }
        assert_eq!(
            deep.check_link_target("../../../x"),
            Err(PathError::Escapes)
        );
        assert_eq!(top.check_link_target(""), Err(PathError::EmptyComponent));
        assert_eq!(top.check_link_target("a\0b"), Err(PathError::Nul));
        let long = "a/".repeat(MAX_PATH_LEN / 2 + 1);
        assert_eq!(
            top.check_link_target(&long),
            Err(PathError::TooLong(MAX_PATH_LEN))
        );
        let deepest = "a/".repeat(MAX_DEPTH + 1);
        assert_eq!(
            top.check_link_target(&deepest),
            Err(PathError::TooDeep(MAX_DEPTH))
        );
        assert_eq!(top.check_link_target(&"a/".repeat(MAX_DEPTH)), Ok(()));
    }

    #[test]
    fn the_length_limit_is_exact() {
        let longest = "x".repeat(MAX_PATH_LEN);
        assert!(RemotePath::parse(&longest).is_ok());
        assert!(matches!(
            RemotePath::parse(&format!("{longest}y")),
            Err(PathError::TooLong(MAX_PATH_LEN))
        ));
    }
}
