//! CPU cost of a login: the server's side of SCRAM-SHA-256 alone (parse client-first, build
//! server-first, check the proof, sign), with and without channel binding; and the client's
//! PBKDF2 at the default iteration count, which cached keys avoid.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ftprep::auth::{
    ChannelBinding, ClientFirst, ClientFirstMessage, ClientKeys, DEFAULT_ITERATIONS,
    ServerExchange, Verifier,
};

/// A client's messages for one exchange, prepared outside the measurement.
fn client_messages(binding: ChannelBinding, verifier: &Verifier) -> (String, String, String) {
    let first = ClientFirst::with_binding("alice", binding.clone());
    let server_binding = match &binding {
        ChannelBinding::TlsServerEndPoint(data) => Some(data.clone()),
        _ => None,
    };
    let parsed = ClientFirstMessage::parse(&first.message()).unwrap();
    let (_, server_first) = ServerExchange::start_with_nonce(
        parsed,
        verifier.clone(),
        server_binding.as_deref(),
        "fixedservernonce",
    );
    let challenge = first.clone().receive_server_first(&server_first).unwrap();
    let keys = ClientKeys::derive("pw", &challenge.salt, challenge.iterations);
    let (client_final, _) = challenge.respond(&keys);
    (first.message(), first.mechanism().to_owned(), client_final)
}

fn server_side(c: &mut Criterion) {
    let verifier = Verifier::from_password("pw", b"0123456789abcdef", 4096);
    let cert_hash = vec![7u8; 32];
    for (name, binding) in [
        ("server SCRAM-SHA-256 exchange", ChannelBinding::None),
        (
            "server SCRAM-SHA-256-PLUS exchange",
            ChannelBinding::TlsServerEndPoint(cert_hash.clone()),
        ),
    ] {
        let server_binding =
            matches!(binding, ChannelBinding::TlsServerEndPoint(_)).then_some(cert_hash.as_slice());
        let (client_first, mechanism, client_final) = client_messages(binding, &verifier);
        c.bench_function(name, |b| {
            b.iter(|| {
                let first = ClientFirstMessage::parse(black_box(&client_first)).unwrap();
                ServerExchange::check_binding(&first, &mechanism, server_binding).unwrap();
                let (exchange, server_first) = ServerExchange::start_with_nonce(
                    first,
                    verifier.clone(),
                    server_binding,
                    "fixedservernonce",
                );
                black_box(server_first);
                exchange.finish(black_box(&client_final)).unwrap()
            })
        });
    }
    c.bench_function("server mock verifier for an unknown user", |b| {
        b.iter(|| {
            Verifier::mock(
                black_box(b"server secret"),
                black_box("ghost"),
                &[(600_000, 1)],
            )
        })
    });
}

fn client_pbkdf2(c: &mut Criterion) {
    let mut group = c.benchmark_group("client");
    group.sample_size(10);
    group.bench_function("PBKDF2 at the default 600,000 iterations", |b| {
        b.iter(|| ClientKeys::derive(black_box("pw"), b"0123456789abcdef", DEFAULT_ITERATIONS))
    });
    group.finish();
}

criterion_group!(benches, server_side, client_pbkdf2);
criterion_main!(benches);
