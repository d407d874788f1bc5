//! From a user's paths to object keys and back, and the attributes kept with an object.

use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes as StoreAttributes};

use crate::commands::Attributes;
use crate::paths::{RemotePath, is_plain_name, partial_name};

/// The name of a directory's marker object, inside the directory.
pub const DIRECTORY_MARKER: &str = ".ftprep-dir";

/// Names of this server's own objects (markers, upload state) start with this; users
/// cannot make such names, and listings never show them.
pub const RESERVED_PREFIX: &str = ".ftprep-";

const MTIME: &str = "ftprep-mtime";
const MODE: &str = "ftprep-mode";

/// The keys of one user's tree.
#[derive(Debug, Clone)]
pub struct Keys {
    home: Path,
}

impl Keys {
    pub fn new(home: Path) -> Self {
        Keys { home }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The key of `path`: one key part per checked component, each percent-encoded, so
    /// the key stays under the home.
    pub fn of(&self, path: &RemotePath) -> Path {
        path.components()
            .iter()
            .fold(self.home.clone(), |key, name| key.join(name.as_str()))
    }
}

/// What a listing of the directory `dir` asks for: every key starting `dir/`.
pub fn dir_prefix(dir: &Path) -> String {
    if dir.is_root() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

pub fn marker(dir: &Path) -> Path {
    dir.clone().join(DIRECTORY_MARKER)
}

/// Where the state of an interrupted upload of `name` into `dir` is kept.
pub fn state_key(dir: &Path, name: &str) -> Path {
    dir.clone().join(partial_name(name).as_str())
}

/// A key part as the user named it, or `None` for the server's own objects and for names
/// no client could have made (put there by other tools).
pub fn decoded(part: &str) -> Option<String> {
    let name = percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()?
        .into_owned();
    (is_plain_name(&name) && !name.starts_with(RESERVED_PREFIX)).then_some(name)
}

/// The name a listing shows for the last part of `key`, if any.
pub fn shown_name(key: &Path) -> Option<String> {
    decoded(key.filename()?)
}

pub fn attributes_to_store(attributes: Attributes) -> StoreAttributes {
    let mut stored = StoreAttributes::new();
    stored.insert(
        Attribute::Metadata(MTIME.into()),
        AttributeValue::from(attributes.modified.to_string()),
    );
    stored.insert(
        Attribute::Metadata(MODE.into()),
        AttributeValue::from(format!("{:o}", attributes.mode & 0o777)),
    );
    stored
}

/// The attributes a `put -p` gave an object, if it was given some and they parse.
pub fn stored_attributes(stored: &StoreAttributes) -> Option<Attributes> {
    let modified = stored
        .get(&Attribute::Metadata(MTIME.into()))?
        .as_ref()
        .parse()
        .ok()?;
    let mode = stored
        .get(&Attribute::Metadata(MODE.into()))
        .and_then(|m| u32::from_str_radix(m.as_ref(), 8).ok())
        .unwrap_or(0o644)
        & 0o777;
    Some(Attributes { modified, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_stays_under_the_home() {
        let keys = Keys::new(Path::from("files/alice"));
        for raw in [
            "a/b",
            "x%2F..%2Fbob",
            "./c",
            "a b/ü",
            "..%2e",
            "back\\slash",
        ] {
            let path = RemotePath::parse(raw).unwrap();
            let key = keys.of(&path);
            assert!(key.prefix_matches(keys.home()), "{raw} -> {key}");
            assert_eq!(
                key.parts().count(),
                2 + path.components().len(),
                "one key part per component: {raw} -> {key}"
            );
            let last = key.filename().unwrap();
            assert_eq!(decoded(last).as_deref(), path.file_name(), "{raw} -> {key}");
        }
    }

    #[test]
    fn reserved_and_impossible_names_are_never_shown() {
        assert_eq!(decoded(DIRECTORY_MARKER), None);
        assert_eq!(decoded(&partial_name("x")), None);
        assert_eq!(decoded("a%2Fb"), None, "a slash inside a name");
        assert_eq!(decoded("%FF"), None, "not UTF-8");
        assert_eq!(decoded("ok%25").as_deref(), Some("ok%"));
    }

    #[test]
    fn attributes_survive_the_store() {
        let attributes = Attributes {
            modified: 1_700_000_000,
            mode: 0o640,
        };
        assert_eq!(
            stored_attributes(&attributes_to_store(attributes)),
            Some(attributes)
        );
        assert_eq!(stored_attributes(&StoreAttributes::new()), None);
    }
}
