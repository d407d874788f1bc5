//! Property tests: the frame codec round-trips and never panics on hostile bytes, and no
//! generated path resolves outside the home.

use bytes::BytesMut;
use ftprep::Error;
use ftprep::commands::{Request, Response};
use ftprep::paths::RemotePath;
use ftprep::wire::{FrameCodec, MAX_FRAME_LEN, decode, encode};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (".{0,64}", any::<bool>()).prop_map(|(path, parents)| Request::Mkdir { path, parents }),
        ".{0,64}".prop_map(|path| Request::List { path }),
        (".{0,32}", ".{0,32}", any::<bool>()).prop_map(|(from, to, overwrite)| Request::Rename {
            from,
            to,
            overwrite
        }),
        (
            ".{0,32}",
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of((any::<i64>(), any::<u32>()))
        )
            .prop_map(|(path, size, overwrite, resume, preserve)| {
                Request::PutStart {
                    path,
                    size,
                    overwrite,
                    resume,
                    preserve: preserve
                        .map(|(modified, mode)| ftprep::commands::Attributes { modified, mode }),
                }
            }),
        proptest::collection::vec(any::<u8>(), 0..2048)
            .prop_map(|data| Request::PutData { data: data.into() }),
        any::<[u8; 16]>().prop_map(|checksum| Request::PutFinish { checksum }),
        (".{0,32}", any::<u64>()).prop_map(|(path, offset)| Request::Get { path, offset }),
        Just(Request::Usage),
        Just(Request::Mechanisms),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any datagram the time service may receive: decoding never panics, and a header
    /// that decodes encodes back to the same 48 bytes (the fuzz target does the same).
    #[test]
    fn ntp_datagrams_decode_without_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(packet) = ftprep::ntp::Packet::decode(&bytes) {
            prop_assert_eq!(&packet.encode()[..], &bytes[..ftprep::ntp::HEADER_LEN]);
            let _ = packet.reference_name();
        } else {
            prop_assert!(bytes.len() < ftprep::ntp::HEADER_LEN);
        }
    }

    #[test]
    fn requests_round_trip_through_frames(req in request()) {
        let payload = encode(&req).unwrap();
        let mut wire = BytesMut::new();
        FrameCodec::default().encode(payload, &mut wire).unwrap();
        let frame = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
        prop_assert!(wire.is_empty());
        prop_assert_eq!(decode::<Request>(&frame).unwrap(), req);
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_panic(req in request()) {
        let mut wire = BytesMut::new();
        FrameCodec::default().encode(encode(&req).unwrap(), &mut wire).unwrap();
        let full = wire.len();
        for cut in 0..full {
            let mut partial = BytesMut::from(&wire[..cut]);
            // Not a frame yet...
            prop_assert!(FrameCodec::default().decode(&mut partial).unwrap().is_none());
            // ...and a connection closing here is a truncated frame (or a clean close at 0).
            let mut at_eof = BytesMut::from(&wire[..cut]);
            match FrameCodec::default().decode_eof(&mut at_eof) {
                Ok(None) => prop_assert_eq!(cut, 0),
                Err(Error::TruncatedFrame) => prop_assert!(cut > 0),
                other => prop_assert!(false, "cut {}: {:?}", cut, other),
            }
            // A truncated payload never decodes as a whole message.
            if cut > 4 {
                prop_assert!(decode::<Request>(&wire[4..cut]).is_err());
            }
        }
    }

    #[test]
    fn random_bytes_are_errors_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Response>(&bytes);
        let _ = decode::<ftprep::commands::Hello>(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = FrameCodec::default().decode(&mut buf) {
            let _ = decode::<Request>(&frame);
        }
    }

    #[test]
    fn announced_lengths_over_the_limit_are_refused_at_once(len in (MAX_FRAME_LEN as u32 + 1)..) {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        let is_too_large = matches!(FrameCodec::default().decode(&mut buf), Err(Error::FrameTooLarge { .. }));
        prop_assert!(is_too_large);
        // Nothing was reserved for the body.
        prop_assert!(buf.capacity() < 1024);
    }

    #[test]
    fn no_path_resolves_above_the_home(parts in proptest::collection::vec(
        prop_oneof![Just("..".to_owned()), Just(".".to_owned()), Just(String::new()), "[a-z]{1,3}"],
        0..12,
    ), leading in any::<bool>()) {
        let raw = format!("{}{}", if leading { "/" } else { "" }, parts.join("/"));
        // A reference walk: the depth below the home never goes negative.
        let mut depth: i64 = 0;
        let mut escapes = false;
        for part in raw.trim_start_matches('/').trim_end_matches('/').split('/') {
            match part {
                ".." => { depth -= 1; if depth < 0 { escapes = true; } }
                "." | "" => {}
                _ => depth += 1,
            }
        }
        if let Ok(path) = RemotePath::parse(&raw) {
            prop_assert!(!escapes, "{:?} escaped but was accepted", raw);
            let rel = path.to_relative();
            prop_assert!(rel.is_relative());
            prop_assert!(rel.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)));
        }
    }
}

/// The storage jail itself: with symlinks out of the home in place, `mkdir -p` of any
/// generated path creates nothing outside it.
#[test]
fn no_generated_path_creates_anything_outside_the_home() {
    use ftprep::server::{FsStorage, Storage};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let storage = FsStorage::open(&dir.path().join("root")).unwrap();
    let user = ftprep::username::Username::parse("alice").unwrap();
    let tree = runtime.block_on(storage.open_home(&user)).unwrap();
    let home = dir.path().join("root/alice");
    std::os::unix::fs::symlink(&outside, home.join("out")).unwrap();
    std::os::unix::fs::symlink("..", home.join("up")).unwrap();
    std::os::unix::fs::symlink("/", home.join("root")).unwrap();
    let part = prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("out".to_owned()),
        Just("up".to_owned()),
        Just("root".to_owned()),
        Just("alice".to_owned()),
        "[a-c]{1,2}",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&proptest::collection::vec(part, 1..8), |parts| {
            if let Ok(path) = RemotePath::parse(&parts.join("/")) {
                let _ = runtime.block_on(tree.mkdir(&path, true));
            }
            prop_assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
            let mut top: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            top.sort();
            prop_assert_eq!(top, ["outside", "root"]);
            prop_assert_eq!(
                std::fs::read_dir(dir.path().join("root")).unwrap().count(),
                1
            );
            Ok(())
        })
        .unwrap();
    // The generated paths did create directories, inside the home.
    assert!(std::fs::read_dir(&home).unwrap().count() > 3);
}
