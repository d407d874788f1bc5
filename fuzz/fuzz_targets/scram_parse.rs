//! Arbitrary text as every SCRAM message both sides parse: never a panic, and the server
//! never accepts a proof it did not check.
#![no_main]

use ftprep::auth::{
    ChannelBinding, ClientFirst, ClientFirstMessage, ClientKeys, ServerExchange, Verifier,
    unescape_username,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = unescape_username(text);
    let _ = text.parse::<Verifier>();
    // Server side: a client-first, then the same text as client-final.
    let verifier = Verifier::from_password("pw", b"fuzzsalt", 1);
    if let Ok(first) = ClientFirstMessage::parse(text) {
        let binding = [7u8; 32];
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
            if ServerExchange::check_binding(&first, mechanism, Some(&binding)).is_ok() {
                let (exchange, _) = ServerExchange::start(first.clone(), verifier.clone(), Some(&binding));
                assert!(exchange.finish(text).is_err(), "a proof nobody computed was accepted");
            }
        }
    }
    let first = ClientFirstMessage::parse("n,,n=user,r=abc").expect("valid");
    let (exchange, _) = ServerExchange::start(first, verifier, None);
    let _ = exchange.finish(text);
    // Client side: the text as server-first and as server-final.
    let client = ClientFirst::with_binding("user", ChannelBinding::TlsServerEndPoint(vec![1; 32]));
    if let Ok(challenge) = ClientFirst::with_nonce("user", "abc").receive_server_first(text) {
        let keys = ClientKeys::derive("pw", &challenge.salt, 1);
        let (_, state) = challenge.respond(&keys);
        let _ = state.verify_server_final(text);
    }
    let _ = client.receive_server_first(text);
});
