use super::*;

// RFC 7677, section 3.
const USER: &str = "user";
const PASSWORD: &str = "pencil";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> Verifier {
    let salt = BASE64_STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    Verifier::from_password(PASSWORD, &salt, 4096)
}

/// Each refusal has the `e=` value RFC 5802 (section 7) names for it; the rest say
/// `other-error`, which tells an attacker nothing more.
#[test]
fn refusals_have_the_rfc_5802_server_error_values() {
    let cases = [
        (ScramError::AuthenticationFailed, "invalid-proof"),
        (ScramError::NonceMismatch, "other-error"),
        (
            ScramError::Unsupported("mandatory extension"),
            "extensions-not-supported",
        ),
        (
            ScramError::Unsupported("authorization identity"),
            "other-error",
        ),
        (
            ScramError::ChannelBindingNotSupported,
            "channel-binding-not-supported",
        ),
        (
            ScramError::UnsupportedChannelBindingType,
            "unsupported-channel-binding-type",
        ),
        (
            ScramError::ServerSupportsChannelBinding,
            "server-does-support-channel-binding",
        ),
        (
            ScramError::ChannelBindingRequired,
            "server-does-support-channel-binding",
        ),
        (
            ScramError::ChannelBindingMismatch,
            "channel-bindings-dont-match",
        ),
        (
            ScramError::Malformed("username encoding"),
            "invalid-username-encoding",
        ),
        (
            ScramError::Malformed("missing gs2 header"),
            "invalid-encoding",
        ),
        (ScramError::MechanismMismatch, "other-error"),
        (ScramError::BadIterationCount(1), "other-error"),
    ];
    for (error, value) in cases {
        assert_eq!(error.server_error_value(), value, "{error:?}");
    }
}

/// A password SASLprep maps to nothing (a soft hyphen) is as empty as "".
#[test]
fn new_passwords_are_checked() {
    assert_eq!(
        check_new_password(""),
        Err(ScramError::BadPassword("the password is empty"))
    );
    assert_eq!(
        check_new_password("\u{AD}"),
        Err(ScramError::BadPassword(
            "the password is empty after SASLprep"
        ))
    );
    assert!(matches!(
        check_new_password("a\u{7}b"),
        Err(ScramError::BadPassword(_))
    ));
    assert_eq!(check_new_password("pencil"), Ok(()));
}

/// Salts and nonces are fresh each time, and a nonce is 18 bytes of base64.
#[test]
fn randomness_is_fresh() {
    let (a, b) = (random_bytes::<16>(), random_bytes::<16>());
    assert_ne!(a, b);
    assert!(a.iter().any(|&x| x > 1) || b.iter().any(|&x| x > 1));
    let (n, m) = (new_nonce(), new_nonce());
    assert_ne!(n, m);
    assert_eq!(n.len(), 24);
    assert!(valid_nonce(&n), "{n}");
}

/// A nonce is printable ASCII but `,` (RFC 5802, section 7), and not empty.
#[test]
fn nonces_are_printable_ascii() {
    assert!(valid_nonce("!~abc%)"));
    for bad in ["", "b c", "b\u{7f}", "b\u{e9}", "a,b", "tab\t"] {
        assert!(!valid_nonce(bad), "{bad:?}");
    }
    for bad in [
        "n,,n=a,r=",
        "n,,n=a,r=b c",
        "n,,n=a,r=b\u{7f}",
        "n,,n=a,r=\u{e9}",
    ] {
        assert_eq!(
            ClientFirstMessage::parse(bad).unwrap_err(),
            ScramError::Malformed("the nonce has invalid characters"),
            "{bad:?}"
        );
    }
    let first = ClientFirst::with_nonce(USER, "abc");
    assert_eq!(
        first
            .receive_server_first("r=abc d,s=AA==,i=4096")
            .unwrap_err(),
        ScramError::Malformed("the nonce has invalid characters")
    );
}

/// The server's last word: a wrong password, another refusal, a signature that is
/// not the server's, or nothing readable.
#[test]
fn the_client_reads_server_final_as_rfc_5802_says() {
    let first = ClientFirst::with_nonce(USER, CLIENT_NONCE);
    let challenge = first.receive_server_first(SERVER_FIRST).unwrap();
    let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
    let (_, state) = challenge.respond(&keys);
    assert_eq!(
        state.verify_server_final("e=invalid-proof"),
        Err(ScramError::AuthenticationFailed)
    );
    assert_eq!(
        state.verify_server_final("e=channel-bindings-dont-match"),
        Err(ScramError::ServerError(
            "channel-bindings-dont-match".into()
        ))
    );
    assert_eq!(
        state.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(ScramError::BadServerSignature)
    );
    assert!(matches!(
        state.verify_server_final("v=***"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        state.verify_server_final("x=1"),
        Err(ScramError::Malformed(_))
    ));
    assert_eq!(state.verify_server_final(SERVER_FINAL), Ok(()));
}

/// A salt is 1 to MAX_SALT_LEN bytes; a channel-binding name is letters, digits, `.`
/// and `-` (RFC 5802's cb-name).
#[test]
fn salts_and_binding_names_have_their_bounds() {
    let first = || ClientFirst::with_nonce(USER, "abc");
    let with_salt = |len: usize| {
        format!(
            "r=abcdef,s={},i=4096",
            BASE64_STANDARD.encode(vec![7u8; len])
        )
    };
    assert!(
        first()
            .receive_server_first(&with_salt(MAX_SALT_LEN))
            .is_ok()
    );
    assert!(first().receive_server_first(&with_salt(1)).is_ok());
    for len in [0, MAX_SALT_LEN + 1] {
        assert_eq!(
            first().receive_server_first(&with_salt(len)).unwrap_err(),
            ScramError::Malformed("the salt is empty or too long"),
            "{len}"
        );
    }
    let parsed = ClientFirstMessage::parse("p=a.b-9,,n=a,r=b").unwrap();
    assert_eq!(parsed.flag, Gs2Flag::Bound("a.b-9".into()));
    for bad in ["p=a_b,,n=a,r=b", "p=a b,,n=a,r=b", "p=,,n=a,r=b"] {
        assert_eq!(
            ClientFirstMessage::parse(bad).unwrap_err(),
            ScramError::Malformed("bad gs2 channel-binding flag"),
            "{bad}"
        );
    }
}

/// Keys and verifiers never show their secrets in logs.
#[test]
fn debug_output_keeps_the_keys_secret() {
    let keys = ClientKeys::derive(PASSWORD, b"salt", MIN_ITERATIONS);
    let shown = format!("{keys:?}");
    assert!(
        shown.contains("ClientKeys") && shown.contains("4096"),
        "{shown}"
    );
    assert!(
        !shown.contains(&BASE64_STANDARD.encode(keys.client_key)),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("{:?}", keys.client_key)),
        "{shown}"
    );
    let verifier = rfc_verifier();
    let shown = format!("{verifier:?}");
    assert!(
        shown.contains("Verifier") && shown.contains("4096"),
        "{shown}"
    );
    assert!(
        !shown.contains(&BASE64_STANDARD.encode(verifier.stored_key)),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("{:?}", verifier.server_key)),
        "{shown}"
    );
}

#[test]
fn rfc7677_client_side_byte_for_byte() {
    let first = ClientFirst::with_nonce(USER, CLIENT_NONCE);
    assert_eq!(first.message(), CLIENT_FIRST);
    let challenge = first.receive_server_first(SERVER_FIRST).unwrap();
    assert_eq!(challenge.iterations, 4096);
    let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
    let (client_final, state) = challenge.respond(&keys);
    assert_eq!(client_final, CLIENT_FINAL);
    state.verify_server_final(SERVER_FINAL).unwrap();
}

#[test]
fn rfc7677_server_side_byte_for_byte() {
    let first = ClientFirstMessage::parse(CLIENT_FIRST).unwrap();
    assert_eq!(first.username, USER);
    let (exchange, server_first) =
        ServerExchange::start_with_nonce(first, rfc_verifier(), None, SERVER_NONCE);
    assert_eq!(server_first, SERVER_FIRST);
    assert_eq!(exchange.finish(CLIENT_FINAL).unwrap(), SERVER_FINAL);
}

#[test]
fn wrong_password_fails_at_the_proof_and_mock_fails_the_same_way() {
    let run = |verifier: Verifier, password: &str| {
        let first = ClientFirst::new(USER);
        let parsed = ClientFirstMessage::parse(&first.message()).unwrap();
        let (exchange, server_first) = ServerExchange::start(parsed, verifier, None);
        let challenge = first.receive_server_first(&server_first).unwrap();
        let keys = ClientKeys::derive(password, &challenge.salt, challenge.iterations);
        exchange.finish(&challenge.respond(&keys).0)
    };
    assert!(run(rfc_verifier(), PASSWORD).is_ok());
    assert_eq!(
        run(rfc_verifier(), "pencil2"),
        Err(ScramError::AuthenticationFailed)
    );
    let mut mock = Verifier::mock(b"secret", USER, &[]);
    mock.iterations = MIN_ITERATIONS; // keep the unit test fast
    assert_eq!(run(mock, PASSWORD), Err(ScramError::AuthenticationFailed));
}

#[test]
fn mock_verifier_is_stable_per_name_and_secret() {
    let a = Verifier::mock(b"secret", "ghost", &[]);
    assert_eq!(a, Verifier::mock(b"secret", "ghost", &[]));
    assert_ne!(a.salt, Verifier::mock(b"secret", "ghost2", &[]).salt);
    assert_ne!(a.salt, Verifier::mock(b"other", "ghost", &[]).salt);
    assert_eq!(a.salt.len(), SALT_LEN);
    assert_eq!(a.iterations, DEFAULT_ITERATIONS);
}

/// Issue 11.10: every unknown name said `i=600000`, so a user created with another
/// count stood out. Unknown names now get the counts users have, as often as they have
/// them.
#[test]
fn mock_iteration_counts_follow_the_users() {
    let only = Verifier::mock(b"secret", "ghost", &[(4096, 3)]);
    assert_eq!(only.iterations, 4096);
    let counts = [(4096, 1), (600_000, 3)];
    let mut seen = std::collections::HashMap::<u32, u32>::new();
    for i in 0..4000 {
        let mock = Verifier::mock(b"secret", &format!("ghost{i}"), &counts);
        *seen.entry(mock.iterations).or_default() += 1;
        // Stable per name.
        assert_eq!(
            mock.iterations,
            Verifier::mock(b"secret", &format!("ghost{i}"), &counts).iterations
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let share = f64::from(seen[&4096]) / 4000.0;
    assert!((0.2..0.3).contains(&share), "4096 for {share} of names");
    // Three counts, none of them the default: each as often as users have it.
    let counts = [(4096, 1), (5000, 1), (6000, 2)];
    let mut seen = std::collections::HashMap::<u32, u32>::new();
    for i in 0..4000 {
        let mock = Verifier::mock(b"secret", &format!("ghost{i}"), &counts);
        *seen.entry(mock.iterations).or_default() += 1;
    }
    let share = |count| f64::from(seen.get(&count).copied().unwrap_or(0)) / 4000.0;
    assert!((0.2..0.3).contains(&share(4096)), "{seen:?}");
    assert!((0.2..0.3).contains(&share(5000)), "{seen:?}");
    assert!((0.45..0.55).contains(&share(6000)), "{seen:?}");
}

#[test]
fn postgres_verifier_round_trips() {
    let text = rfc_verifier().to_string();
    assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    assert_eq!(text.parse::<Verifier>().unwrap(), rfc_verifier());
    for bad in [
        "",
        "md5abc",
        "SCRAM-SHA-256$x:W22Z$a:b",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$abc:def",
        "SCRAM-SHA-256$4096:!!$AAAA:BBBB",
    ] {
        assert!(bad.parse::<Verifier>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn client_refuses_bad_server_first() {
    let first = || ClientFirst::with_nonce(USER, "abc");
    let cases = [
        (
            "r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            ScramError::NonceMismatch,
        ),
        (
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            ScramError::NonceMismatch,
        ),
        (
            "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=20000000",
            ScramError::BadIterationCount(20_000_000),
        ),
        (
            "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            ScramError::BadIterationCount(1),
        ),
        (
            "m=ext,r=abcdef,s=AA==,i=4096",
            ScramError::Unsupported("mandatory extension"),
        ),
    ];
    for (msg, err) in cases {
        assert_eq!(first().receive_server_first(msg).unwrap_err(), err, "{msg}");
    }
    for msg in [
        "",
        "garbage",
        "r=abcdef",
        "r=abcdef,s=***,i=4096",
        "r=abcdef,s=AA==,i=x",
    ] {
        assert!(matches!(
            first().receive_server_first(msg),
            Err(ScramError::Malformed(_))
        ));
    }
}

#[test]
fn server_refuses_bad_client_messages() {
    for msg in [
        "",
        "n,",
        "x,,n=a,r=b",
        "n,,r=b",
        "n,,n=a",
        "n,,n=a=b,r=c",
        "n,,n=a,r=b,c",
    ] {
        assert!(ClientFirstMessage::parse(msg).is_err(), "{msg:?} accepted");
    }
    assert!(ClientFirstMessage::parse("p=,,n=a,r=b").is_err());
    assert!(ClientFirstMessage::parse("y,,n=a,r=b").is_ok());
    let first = ClientFirstMessage::parse(CLIENT_FIRST).unwrap();
    let (exchange, _) = ServerExchange::start_with_nonce(first, rfc_verifier(), None, SERVER_NONCE);
    for msg in [
        "",
        "c=biws,r=wrong,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    ] {
        assert!(exchange.clone().finish(msg).is_err(), "{msg:?} accepted");
    }
}

/// Runs a whole exchange with the client's and the server's views of the channel.
fn bound_login(
    client: ChannelBinding,
    mechanism: &str,
    server: Option<&[u8]>,
) -> Result<(), ScramError> {
    let first = ClientFirst::with_binding(USER, client);
    let parsed = ClientFirstMessage::parse(&first.message())?;
    ServerExchange::check_binding(&parsed, mechanism, server)?;
    let (exchange, server_first) = ServerExchange::start(parsed, rfc_verifier(), server);
    let challenge = first.receive_server_first(&server_first)?;
    let keys = ClientKeys::derive(PASSWORD, &challenge.salt, challenge.iterations);
    let (client_final, state) = challenge.respond(&keys);
    let server_final = exchange.finish(&client_final)?;
    state.verify_server_final(&server_final)
}

#[test]
fn channel_binding_plus_and_downgrades() {
    let cert_hash = [7u8; 32];
    let plus = || ChannelBinding::TlsServerEndPoint(cert_hash.to_vec());
    // Bound to the same certificate: success, and the gs2 header says so.
    assert_eq!(
        bound_login(plus(), MECHANISM_PLUS, Some(&cert_hash)),
        Ok(())
    );
    let first = ClientFirst::with_binding(USER, plus());
    assert!(
        first
            .message()
            .starts_with("p=tls-server-end-point,,n=user,r=")
    );
    assert_eq!(first.mechanism(), MECHANISM_PLUS);
    // A relay terminating TLS with another certificate: the bindings differ.
    assert_eq!(
        bound_login(plus(), MECHANISM_PLUS, Some(&[8u8; 32])),
        Err(ScramError::ChannelBindingMismatch)
    );
    // `y` to a server that supports binding: someone stripped PLUS on the way.
    assert_eq!(
        bound_login(
            ChannelBinding::SupportedNotUsed,
            MECHANISM,
            Some(&cert_hash)
        ),
        Err(ScramError::ServerSupportsChannelBinding)
    );
    assert_eq!(
        bound_login(ChannelBinding::SupportedNotUsed, MECHANISM, None),
        Ok(())
    );
    // PLUS where there is no TLS, and names that disagree with the flag.
    assert_eq!(
        bound_login(plus(), MECHANISM_PLUS, None),
        Err(ScramError::ChannelBindingNotSupported)
    );
    assert_eq!(
        bound_login(plus(), MECHANISM, Some(&cert_hash)),
        Err(ScramError::MechanismMismatch)
    );
    assert_eq!(
        bound_login(ChannelBinding::None, MECHANISM_PLUS, Some(&cert_hash)),
        Err(ScramError::MechanismMismatch)
    );
    let other_type = ClientFirstMessage::parse("p=tls-unique,,n=user,r=abc").unwrap();
    assert_eq!(
        ServerExchange::check_binding(&other_type, MECHANISM_PLUS, Some(&cert_hash)),
        Err(ScramError::UnsupportedChannelBindingType)
    );
    assert_eq!(
        ScramError::ChannelBindingMismatch.server_error_value(),
        "channel-bindings-dont-match"
    );
}

#[test]
fn username_escaping() {
    assert_eq!(escape_username("a,b=c"), "a=2Cb=3Dc");
    assert_eq!(unescape_username("a=2Cb=3Dc").unwrap(), "a,b=c");
    assert!(unescape_username("a=2").is_err());
    assert!(unescape_username("a=41").is_err());
}

#[test]
fn saslprep_applies_to_passwords() {
    // U+00A0 (no-break space) maps to a space under SASLprep.
    assert_eq!(
        salted_password("a\u{00A0}b", b"salt", 4096),
        salted_password("a b", b"salt", 4096)
    );
    assert!(check_new_password("").is_err());
    assert!(check_new_password("bad\u{0007}bell").is_err());
    assert!(check_new_password("pencil").is_ok());
}

#[test]
fn a_password_matches_its_verifier_alone() {
    let verifier = Verifier::from_password("correct horse", b"saltsaltsaltsalt", 4096);
    assert!(verifier.matches_password("correct horse"));
    assert!(!verifier.matches_password("correct horse "));
    assert!(!verifier.matches_password(""));
    // Another salt or count makes another verifier: the stored ones are what count.
    let other = Verifier::from_password("correct horse", b"saltsaltsaltsalz", 4096);
    assert!(
        !Verifier {
            salt: other.salt.clone(),
            ..verifier.clone()
        }
        .matches_password("correct horse")
    );
    assert!(
        !Verifier {
            iterations: 4097,
            ..verifier.clone()
        }
        .matches_password("correct horse")
    );
    // PostgreSQL's own verifier for this password (see the verifier tests above) matches.
    let pg: Verifier = "SCRAM-SHA-256$4096:gqNkYnq91hSxhrs2CVWHKg==$BOjZEjm4kPKIl39yI0m6Ri1B3L8vAeUIZ3jqpBkzIKI=:+gsypqOje916RkdLmFjclGymT1x1x/ukyOwrxYsf0lc="
        .parse()
        .unwrap();
    assert!(pg.matches_password("correct horse battery staple"));
    assert!(!pg.matches_password("correct horse battery stapl"));
    // No password matches a mock.
    let mock = Verifier::mock(b"secret", "ghost", &[(4096, 1)]);
    assert!(!mock.matches_password(""));
    assert!(!mock.matches_password("ghost"));
}
