//! File commands through the binaries: transfers, trees, wildcards, sync, pipes, messages.

use super::*;

#[test]
fn file_commands_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::write(sb.path().join("hello.txt"), b"hello").unwrap();

    let out = sb.ftpc(&["put", "hello.txt"], "");
    assert_success(&out);
    // Not a terminal: no progress bar, nothing but errors.
    assert_eq!(text(&out.stderr), "");
    assert_fails(
        &sb.ftpc(&["put", "hello.txt"], ""),
        1,
        "ftpc: put hello.txt: already exists (use -f to replace it)",
    );
    assert_success(&sb.ftpc(&["put", "-f", "hello.txt", "greeting.txt"], ""));

    let out = sb.ftpc(&["ls", "-l"], "");
    assert_success(&out);
    let listing = text(&out.stdout);
    let lines: Vec<_> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("-            5 ") && lines[0].ends_with(" greeting.txt"),
        "{listing}"
    );

    assert_success(&sb.ftpc(&["get", "greeting.txt", "copy.txt"], ""));
    assert_eq!(std::fs::read(sb.path().join("copy.txt")).unwrap(), b"hello");
    let out = sb.ftpc(&["stat", "greeting.txt"], "");
    assert!(
        text(&out.stdout).contains("type: file\nsize: 5 (5 B)\n"),
        "{}",
        text(&out.stdout)
    );

    assert_success(&sb.ftpc(&["mkdir", "docs"], ""));
    // Into an existing directory, under the file's own name, both ways.
    assert_success(&sb.ftpc(&["put", "hello.txt", "docs/"], ""));
    assert_success(&sb.ftpc(&["mkdir", "local-dir"], ""));
    std::fs::create_dir(sb.path().join("local-dir")).unwrap();
    assert_success(&sb.ftpc(&["get", "docs/hello.txt", "local-dir"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("local-dir/hello.txt")).unwrap(),
        b"hello"
    );
    assert_success(&sb.ftpc(&["rm", "docs/hello.txt"], ""));
    assert_success(&sb.ftpc(&["rmdir", "local-dir"], ""));
    assert_success(&sb.ftpc(&["mv", "greeting.txt", "docs"], ""));
    assert_eq!(text(&sb.ftpc(&["ls", "docs"], "").stdout), "greeting.txt\n");
    assert_fails(
        &sb.ftpc(&["rmdir", "docs"], ""),
        1,
        "ftpc: rmdir docs: directory not empty",
    );
    assert_success(&sb.ftpc(&["rm", "-r", "docs"], ""));

    // Trees.
    std::fs::create_dir_all(sb.path().join("project/src")).unwrap();
    std::fs::write(sb.path().join("project/src/main.rs"), b"fn main() {}").unwrap();
    assert_success(&sb.ftpc(&["put", "-r", "project"], ""));
    assert_success(&sb.ftpc(&["get", "-r", "project", "restored"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("restored/project/src/main.rs")).unwrap(),
        b"fn main() {}"
    );

    // Quotas, set by the admin while the server runs.
    // Two directories (4 KiB each) and 17 bytes of files.
    let out = sb.ftpd(&["quota", "alice", "20K"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "quota of alice: 20.0 KiB\n");
    assert_eq!(
        text(&sb.ftpd(&["users"], "").stdout),
        "alice\tquota 20.0 KiB\n"
    );
    let out = sb.ftpc(&["df"], "");
    assert_eq!(text(&out.stdout), "used 8.0 KiB of 20.0 KiB (40.1%)\n");
    std::fs::write(sb.path().join("big"), vec![7u8; 16384]).unwrap();
    let out = sb.ftpc(&["put", "big"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ftpc: put big: quota exceeded (used 8.0 KiB of 20.0 KiB"),
        "{}",
        text(&out.stderr)
    );
    assert!(!sb.path().join("ftp-root/alice/big").exists());
    assert_success(&sb.ftpd(&["quota", "alice", "none"], ""));
    assert_success(&sb.ftpc(&["put", "big"], ""));
    assert_eq!(
        text(&sb.ftpc(&["df"], "").stdout),
        "used 24.0 KiB (no quota)\n"
    );
    let out = sb.ftpd(&["quota", "alice", "--files", "100"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "file quota of alice: 100 entries\n");
    assert_eq!(text(&sb.ftpd(&["users"], "").stdout), "alice\tfiles 100\n");
    assert_eq!(
        text(&sb.ftpc(&["df"], "").stdout),
        "used 24.0 KiB (no quota); 5 of 100 files and directories\n"
    );
}

/// Issues 12.4 and 12.12: a failed `get` left a hidden 0-byte partial file behind, local
/// errors named the file twice with Rust's error code, and `get` of a directory gave no
/// hint.
#[test]
fn failed_transfers_leave_nothing_and_say_why_plainly() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    assert_fails(
        &sb.ftpc(&["put", "nothere.txt"], ""),
        1,
        "ftpc: put nothere.txt: No such file or directory",
    );
    assert_fails(
        &sb.ftpc(&["get", "nothere.txt"], ""),
        1,
        "ftpc: get nothere.txt: no such file or directory",
    );
    assert_success(&sb.ftpc(&["mkdir", "somedir"], ""));
    assert_fails(
        &sb.ftpc(&["get", "somedir"], ""),
        1,
        "ftpc: get somedir: is a directory (use -r)",
    );
    let left: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".ftprep-part-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `put -r src dest/` into an existing directory makes dest/src, as cp and scp do; without
/// the slash the tree is the target itself, so `-c` resumes the same place ("what users
/// expect next" in issue 12). `get -r` likewise.
#[test]
fn trees_go_into_an_existing_directory_named_with_a_slash() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::create_dir_all(sb.path().join("src/sub")).unwrap();
    std::fs::write(sb.path().join("src/sub/f"), b"data").unwrap();
    let root = sb.path().join("ftp-root/alice");
    // Issue 28: rsync's rule, the same for put -r, get -r and sync: `src` goes into the
    // target as target/src, `src/` (its contents) into the target itself; the target's own
    // slash changes nothing.
    assert_success(&sb.ftpc(&["put", "-r", "src", "dest"], ""));
    assert_eq!(std::fs::read(root.join("dest/src/sub/f")).unwrap(), b"data");
    assert_success(&sb.ftpc(&["put", "-r", "-f", "src", "dest/"], ""));
    assert!(!root.join("dest/src/src").exists());
    assert_success(&sb.ftpc(&["put", "-r", "src/", "tree"], ""));
    assert!(root.join("tree/sub/f").is_file());
    assert_success(&sb.ftpc(&["put", "-r", "-c", "src/", "tree"], ""));
    assert!(
        !root.join("tree/src").exists(),
        "resumed in place, not nested"
    );

    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-r", "dest/src", "back"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("back/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["get", "-r", "dest/src/", "flat"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("flat/sub/f")).unwrap(),
        b"data"
    );

    // sync: `--delete photos :backup/` works inside backup/photos and leaves the rest of
    // backup alone (it deleted it).
    std::fs::create_dir_all(root.join("backup")).unwrap();
    std::fs::write(root.join("backup/keep"), b"keep").unwrap();
    assert_success(&sb.ftpc(&["sync", "--delete", "src", ":backup/"], ""));
    assert_eq!(std::fs::read(root.join("backup/keep")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read(root.join("backup/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["check", "src", ":backup"], ""));
    assert_success(&sb.ftpc(&["sync", ":backup/src", "down"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("down/src/sub/f")).unwrap(),
        b"data"
    );
    assert_success(&sb.ftpc(&["sync", ":backup/src/", "same"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("same/sub/f")).unwrap(),
        b"data"
    );
}

/// Wildcards as sftp users type them ("what users expect next" in issue 12): remote ones
/// expanded from a listing, local ones in ftpc's own shell, several sources into one
/// directory, and mput/mget.
#[test]
fn wildcards_and_several_files_at_once() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    for name in ["a.txt", "b.txt", "c.log"] {
        std::fs::write(sb.path().join(name), name).unwrap();
    }
    std::fs::create_dir(sb.path().join("down")).unwrap();
    let batch = "mkdir up\nput *.txt up\nmput c.log\nls up\nget 'up/*.txt' down\nrm 'up/?.txt'\nls up\nlcd down\nmget c.log\n";
    let out = sb.ftpc(&["shell", "-b", "-"], batch);
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        "a.txt\nb.txt\n",
        "the second ls is empty"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path().join("down/c.log")).unwrap(),
        "c.log"
    );
    for name in ["a.txt", "b.txt"] {
        assert_eq!(
            std::fs::read_to_string(sb.path().join("down").join(name)).unwrap(),
            name
        );
    }
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("c.log").is_file());
    // Several files need an existing directory.
    assert_fails(
        &sb.ftpc(&["put", "a.txt", "b.txt", "nodir"], ""),
        2,
        "ftpc: put nodir: not a directory: several files go into an existing directory",
    );
    // A pattern that matches nothing says so.
    assert_fails(
        &sb.ftpc(&["rm", "up/*.none"], ""),
        1,
        "ftpc: rm up/*.none: no match",
    );
    // Issue 28: -r over files and directories together, both ways (it stopped at the
    // first directory, or the first file, with "not a directory").
    std::fs::create_dir_all(sb.path().join("mix/sub")).unwrap();
    std::fs::write(sb.path().join("mix/one"), "1").unwrap();
    std::fs::write(sb.path().join("mix/sub/two"), "2").unwrap();
    assert_success(&sb.ftpc(&["mkdir", "mixed"], ""));
    assert_success(&sb.ftpc(&["put", "-r", "mix/one", "mix/sub", "mixed/"], ""));
    assert_eq!(std::fs::read(root.join("mixed/one")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.join("mixed/sub/two")).unwrap(), b"2");
    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-r", "mixed/*", "back"], ""));
    assert_eq!(std::fs::read(sb.path().join("back/one")).unwrap(), b"1");
    assert_eq!(std::fs::read(sb.path().join("back/sub/two")).unwrap(), b"2");
}

/// Symlinks in a `put -r` tree are reported, with a count, or followed with -L (a link back
/// up the tree is not followed twice) ("what users expect next" in issue 12).
#[test]
fn symlinks_in_an_uploaded_tree_are_reported_or_followed() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let src = sb.path().join("src");
    std::fs::create_dir_all(src.join("real")).unwrap();
    std::fs::write(src.join("real/f"), b"data").unwrap();
    std::fs::write(sb.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("../outside.txt", src.join("file-link")).unwrap();
    std::os::unix::fs::symlink("real", src.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("..", src.join("real/up")).unwrap();

    let out = sb.ftpc(&["put", "-r", "src/", "plain"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("skipped 3 entries in all"), "{stderr}");
    assert!(stderr.contains("-L follows them"), "{stderr}");
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("plain/real/f").is_file());
    assert!(!root.join("plain/file-link").exists());

    let out = sb.ftpc(&["put", "-r", "-L", "src/", "followed"], "");
    assert_success(&out);
    assert_eq!(
        std::fs::read(root.join("followed/file-link")).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(root.join("followed/dir-link/f")).unwrap(),
        b"data"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a loop"), "{stderr}");
}

/// `-p` keeps modification times and permission bits both ways ("what users expect next"
/// in issue 12); without it, a copy is new.
#[test]
fn p_preserves_modification_times_and_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let local = sb.path().join("script.sh");
    std::fs::write(&local, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o750)).unwrap();
    let then = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(&local)
        .unwrap()
        .set_modified(then)
        .unwrap();
    let meta = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        (m.modified().unwrap(), m.permissions().mode() & 0o777)
    };
    assert_success(&sb.ftpc(&["put", "-p", "script.sh"], ""));
    assert_success(&sb.ftpc(&["put", "script.sh", "plain.sh"], ""));
    let root = sb.path().join("ftp-root/alice");
    assert_eq!(meta(&root.join("script.sh")), (then, 0o750));
    assert_ne!(meta(&root.join("plain.sh")).0, then);

    std::fs::create_dir(sb.path().join("back")).unwrap();
    assert_success(&sb.ftpc(&["get", "-p", "script.sh", "back/"], ""));
    assert_eq!(meta(&sb.path().join("back/script.sh")), (then, 0o750));
    assert_success(&sb.ftpc(&["get", "script.sh", "back/again.sh"], ""));
    assert_ne!(meta(&sb.path().join("back/again.sh")).0, then);
}

/// `ftpc sync` and `ftpc check` as a user types them (issue 15).
#[test]
fn sync_and_check_through_the_binaries() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    for name in ["a/one", "a/two", "b/three"] {
        let path = sb.path().join("site").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name).unwrap();
    }
    let out = sb.ftpc(&["sync", "site/", ":www"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).starts_with("3 files sent ("),
        "{}",
        text(&out.stdout)
    );
    let root = sb.path().join("ftp-root/alice/www");
    assert_eq!(std::fs::read(root.join("b/three")).unwrap(), b"b/three");
    let out = sb.ftpc(&["sync", "site/", ":www"], "");
    assert!(
        text(&out.stdout).starts_with("0 files sent (0 B), 3 unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_success(&sb.ftpc(&["check", "site/", ":www"], ""));

    std::fs::write(sb.path().join("site/a/one"), "ONE?").unwrap();
    std::fs::remove_file(sb.path().join("site/a/two")).unwrap();
    let out = sb.ftpc(&["check", "site/", ":www"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "differs: a/one\nonly remote: a/two\n1 files the same, 1 differ, 0 only local, 1 only remote\n"
    );
    let out = sb.ftpc(&["sync", "--delete", "--dry-run", "site/", ":www"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("delete a/two\n"),
        "{}",
        text(&out.stdout)
    );
    // Issue 28: a dry run moved nothing, so it tells no time and no rate.
    let summary = text(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.starts_with("would be: 1 files sent (") && !summary.contains("/s"),
        "{summary}"
    );
    assert!(root.join("a/two").exists());
    assert_success(&sb.ftpc(&["sync", "--delete", "site/", ":www"], ""));
    assert!(!root.join("a/two").exists());
    assert_success(&sb.ftpc(&["check", "site/", ":www"], ""));

    // And back down, into a fresh directory: files received, not sent.
    let out = sb.ftpc(&["sync", ":www/", "copy"], "");
    assert_success(&out);
    assert!(
        text(&out.stdout).starts_with("2 files received ("),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read(sb.path().join("copy/a/one")).unwrap(),
        b"ONE?"
    );
    // Neither side remote: a usage error.
    let out = sb.ftpc(&["sync", "site", "www"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Over three connections, and over one; -j out of range is a usage error.
    std::fs::write(sb.path().join("site/b/four"), "4").unwrap();
    assert_success(&sb.ftpc(&["sync", "-j", "3", "site/", ":www"], ""));
    assert_eq!(std::fs::read(root.join("b/four")).unwrap(), b"4");
    assert_success(&sb.ftpc(&["get", "-r", "-j", "1", "www", "one"], ""));
    assert_eq!(
        std::fs::read(sb.path().join("one/www/b/four")).unwrap(),
        b"4"
    );
    for bad in ["0", "17", "x"] {
        let out = sb.ftpc(&["put", "-r", "-j", bad, "site", "w2"], "");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("from 1 to 16"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Issue 28: `ls -la`, `ls -lh`, `ls -a`, wildcards and several paths in `ls`; several
/// paths to `mkdir` and `rmdir`; `rm -rf` of what may not be there; names as they are into
/// a pipe, NUL-ended with `-0`.
#[test]
fn ls_mkdir_rmdir_and_rm_take_what_people_type() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let ftpc = |args: &[&str]| sb.ftpc(args, "");
    assert_success(&ftpc(&["mkdir", "-p", "docs/old", "empty1", "empty2"]));
    let home = sb.path().join("ftp-root/alice");
    std::fs::write(home.join("docs/a.txt"), vec![1u8; 1536]).unwrap();
    std::fs::write(home.join("docs/b.txt"), b"b").unwrap();
    std::fs::write(home.join("docs/.hidden"), b"h").unwrap();
    std::fs::write(home.join("docs/line\nbreak"), b"x").unwrap();

    let out = ftpc(&["ls", "docs"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "a.txt\nb.txt\nline\nbreak\nold/\n");
    let out = ftpc(&["ls", "-a", "-0", "docs"]);
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        ".hidden\0a.txt\0b.txt\0line\nbreak\0old/\0"
    );
    let out = ftpc(&["ls", "-lah", "docs"]);
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(".hidden") && shown.contains(" 1.5K "),
        "{shown}"
    );
    let out = ftpc(&["ls", "docs/*.txt"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "docs/a.txt\ndocs/b.txt\n");
    let out = ftpc(&["ls", "docs/old", "docs/b.txt", "empty1"]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "docs/b.txt\n\ndocs/old:\n\nempty1:\n");
    let out = ftpc(&["ls", "docs/*.pdf"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    assert_success(&ftpc(&["rmdir", "empty1", "empty2"]));
    assert!(!home.join("empty1").exists() && !home.join("empty2").exists());
    let out = ftpc(&["rm", "docs/nothing"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_success(&ftpc(&["rm", "-rf", "docs/nothing", "docs/*.pdf", "docs"]));
    assert!(!home.join("docs").exists());
    drop(server);
}

/// Issue 28: pipes, as with scp and curl: `tar c dir | ftpc put - backup.tar`, `ftpc get
/// FILE -` and `ftpc cat` to standard output; in a batch, whose standard input is the
/// commands, `put -` is refused.
#[test]
fn standard_input_and_output_carry_files() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    // Larger than a chunk, so it streams; not a multiple of one.
    let data: Vec<u8> = (0..3_000_123u32).map(|i| (i % 251) as u8).collect();
    let mut child = sb
        .command(FTPC, &["put", "-", "from-stdin.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_success(&out);
    let home = sb.path().join("ftp-root/alice");
    assert_eq!(std::fs::read(home.join("from-stdin.bin")).unwrap(), data);

    let out = sb.ftpc(&["get", "from-stdin.bin", "-"], "");
    assert_success(&out);
    assert!(out.stdout == data, "get - wrote {} bytes", out.stdout.len());
    std::fs::write(home.join("a.txt"), b"first\n").unwrap();
    std::fs::write(home.join("b.txt"), b"second\n").unwrap();
    let out = sb.ftpc(&["cat", "*.txt"], "");
    assert_success(&out);
    assert_eq!(text(&out.stdout), "first\nsecond\n");
    let out = sb.ftpc(&["cat", "missing"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let out = sb.ftpc(&["shell", "-b", "-"], "put - x\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!home.join("x").exists());
    drop(server);
}

/// Issue 28: messages that misled. A small `put` the server refused first printed a success
/// line; `mv f nodir/x` blamed `f`.
#[test]
fn messages_blame_what_failed_and_claim_no_success_first() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    std::fs::write(sb.path().join("small"), vec![7u8; 100_000]).unwrap();
    assert_success(&sb.ftpc(&["put", "small"], ""));
    let term = Terminal::spawn(&sb, &["put", "small"]);
    term.wait_for("already exists");
    let screen = Arc::clone(&term.screen);
    let status = term.exit_status();
    assert_eq!(status.code(), Some(1));
    let shown = screen.lock().unwrap().clone();
    assert!(!shown.contains(" in 0."), "a success line first: {shown}");

    let out = sb.ftpc(&["mv", "small", "nodir/x"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("ftpc: mv nodir/x: "),
        "{}",
        text(&out.stderr)
    );
    let out = sb.ftpc(&["mv", "nothere", "x"], "");
    assert!(
        text(&out.stderr).starts_with("ftpc: mv nothere: "),
        "{}",
        text(&out.stderr)
    );
    drop(server);
}

/// Issue 28: a `get -r` error printed a name with a line break raw, so a name from the
/// server could forge a line of output; names in errors are escaped.
#[test]
fn a_name_with_a_line_break_is_escaped_in_errors() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let name = "bad\nftpc: all done";
    let home = sb.path().join("ftp-root/alice/mix");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(name), "x").unwrap();
    std::fs::create_dir_all(sb.path().join("mix").join(name)).unwrap();
    for args in [&["get", "-r", "mix"][..], &["get", "-r", "-f", "mix"]] {
        let out = sb.ftpc(args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("mix/bad\\nftpc: all done: "), "{stderr}");
    }
    drop(server);
}

/// Issue 28: an interrupted `ftpc get` left `.ftprep-part-...` without a word about `-c`; it
/// now says how to go on, exits 130 as an interrupted command does, and `get -c` finishes.
#[test]
fn an_interrupted_get_says_how_to_continue() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let home = sb.path().join("ftp-root/alice");
    std::fs::create_dir_all(&home).unwrap();
    let big = std::fs::File::create(home.join("big")).unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let mut term = Terminal::spawn(&sb, &["get", "big"]);
    let partial = || {
        std::fs::read_dir(sb.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".ftprep-part-"))
    };
    wait_until("the download started", partial);
    term.type_keys("\x03");
    term.wait_for("the same command with -c continues it");
    let status = term.exit_status();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(partial());
    assert_success(&sb.ftpc(&["get", "-c", "big"], ""));
    assert_eq!(
        std::fs::metadata(sb.path().join("big")).unwrap().len(),
        1 << 30
    );
    assert!(!partial());

    // The same when the connection is lost half way: the server dies mid-download.
    let mut again = sb.command(FTPC, &["get", "big", "again"]);
    let again = again
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the second download started", partial);
    let mut server = server;
    server.child.kill().unwrap();
    let out = again.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("was lost is kept: the same command with -c continues it"),
        "{stderr}"
    );
    assert!(partial());
}

/// Issue 28: `sync` printed a line per symlink on every run; they are counted in one line
/// now, and `-L` sends what they point to (a link back up the tree is left out as a loop,
/// a link to nothing as broken).
#[test]
fn sync_counts_symlinks_or_follows_them() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let site = sb.path().join("site");
    std::fs::create_dir_all(site.join("real")).unwrap();
    std::fs::write(site.join("real/f"), b"data").unwrap();
    std::fs::write(sb.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("../outside.txt", site.join("file-link")).unwrap();
    std::os::unix::fs::symlink("real", site.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("..", site.join("real/up")).unwrap();
    std::os::unix::fs::symlink("nothing", site.join("broken")).unwrap();

    let out = sb.ftpc(&["sync", "site/", ":plain"], "");
    assert_success(&out);
    assert_eq!(
        text(&out.stderr),
        "left out 4 symlinks (sync -l keeps them as links, -L sends what they point to)\n"
    );
    let root = sb.path().join("ftp-root/alice");
    assert!(root.join("plain/real/f").is_file());
    assert!(!root.join("plain/file-link").exists());

    let out = sb.ftpc(&["sync", "-L", "site/", ":followed"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("up: a link in a loop"), "{stderr}");
    assert!(stderr.contains("broken: a link to nothing"), "{stderr}");
    assert_eq!(
        std::fs::read(root.join("followed/file-link")).unwrap(),
        b"outside"
    );
    assert_eq!(
        std::fs::read(root.join("followed/dir-link/f")).unwrap(),
        b"data"
    );
    // Run again: nothing to send, the same one line.
    let out = sb.ftpc(&["sync", "site/", ":plain"], "");
    assert!(
        text(&out.stdout).starts_with("0 files sent"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    // -l keeps the links that stay inside the tree, and names the one that leads out.
    let out = sb.ftpc(&["sync", "-l", "site/", ":kept"], "");
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("file-link: a link out of the tree"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains(", 3 links made;"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_link(root.join("kept/dir-link")).unwrap(),
        Path::new("real")
    );
    assert_eq!(
        std::fs::read_link(root.join("kept/broken")).unwrap(),
        Path::new("nothing")
    );
    drop(server);
}

/// Issue 28: `--bwlimit RATE`, as rsync and rclone have it: a transfer takes at least as
/// long as its bytes past one chunk take at RATE (a lower bound only: a slow machine
/// cannot make it fail), and arrives whole.
#[test]
fn bwlimit_holds_transfers_to_a_rate() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start(&sb);
    assert_success(&sb.first_login(&server.addr, "alice", "pw"));
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(sb.path().join("three"), &data).unwrap();
    // 3 MiB at 1 MiB/s, the first 512 KiB free: at least 2.5 s each way.
    let started = Instant::now();
    assert_success(&sb.ftpc(&["put", "--bwlimit", "1M", "three"], ""));
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_success(&sb.ftpc(&["get", "--bwlimit", "1024", "three", "back"], ""));
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    assert!(std::fs::read(sb.path().join("back")).unwrap() == data);
    for bad in ["0", "0.5", "fast"] {
        let out = sb.ftpc(&["put", "--bwlimit", bad, "three", "x"], "");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
    drop(server);
}
