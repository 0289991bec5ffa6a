use serde_json::{Value, json};

use super::*;

fn propagation_of(config: Value) -> Propagation {
    let conf: Config = serde_json::from_value(config).expect("config");
    Propagation::from_config(&conf).expect("valid")
}

fn base(propagation: Value, header_type: Value) -> Value {
    json!({
        "traces_endpoint": "http://127.0.0.1:4318/v1/traces",
        "queue": {"max_batch_size": 200, "max_coalescing_delay": 1, "max_entries": 10000,
                  "max_retry_time": 60, "initial_retry_delay": 0.01, "max_retry_delay": 60},
        "connect_timeout": 1000, "send_timeout": 5000, "read_timeout": 5000,
        "header_type": header_type,
        "propagation": propagation,
    })
}

#[test]
fn header_type_maps_to_propagation_as_kong_does() {
    let p = propagation_of(base(json!({"default_format": "w3c"}), json!("preserve")));
    assert_eq!(p.extract, LEGACY_EXTRACT.to_vec());
    assert_eq!(p.inject, vec![Injector::Preserve]);

    let p = propagation_of(base(json!({"default_format": "b3"}), json!("ignore")));
    assert!(p.extract.is_empty());
    assert_eq!(p.inject, vec![Injector::Format(Format::B3)]);

    let p = propagation_of(base(json!({"default_format": "w3c"}), json!("jaeger")));
    assert_eq!(
        p.inject,
        vec![Injector::Preserve, Injector::Format(Format::Jaeger)]
    );
}

#[test]
fn an_explicit_propagation_record_wins_over_header_type() {
    let p = propagation_of(base(
        json!({"extract": ["aws"], "inject": ["w3c", "datadog"], "clear": ["x-amzn-trace-id"],
               "default_format": "w3c"}),
        json!("b3"),
    ));
    assert_eq!(p.extract, vec![Format::Aws]);
    assert_eq!(
        p.inject,
        vec![
            Injector::Format(Format::W3c),
            Injector::Format(Format::Datadog)
        ]
    );
    assert_eq!(p.clear, vec!["x-amzn-trace-id".to_owned()]);
}

#[test]
fn ids_are_padded_and_cut_as_kongs_otlp_encoder() {
    let short = [0xab; 8];
    assert_eq!(propagation::to_id_array::<16>(&short)[..8], [0; 8]);
    assert_eq!(propagation::to_id_array::<16>(&short)[8..], short);
    let long = [7u8; 20];
    assert_eq!(propagation::to_id_array::<16>(&long), [7u8; 16]);
    assert_eq!(
        propagation::to_id_array::<8>(&[1, 2]),
        [0, 0, 0, 0, 0, 0, 1, 2]
    );
    assert_eq!(propagation::to_hex(&[0x0a, 0xff]), "0aff");
    assert_eq!(propagation::to_hex(&[0xab; 40]), "ab".repeat(40));
}

#[test]
fn the_w3c_fast_path_writes_what_the_injector_writes() {
    let trace_id = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    let span_id = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];
    for sampled in [true, false] {
        let fast = propagation::traceparent(&trace_id, &span_id, sampled);
        let ctx = InjectCtx {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_id: None,
            should_sample: Some(sampled),
            baggage: Vec::new(),
            flags: None,
            w3c_flags: None,
            single_header: false,
        };
        let mut headers = Vec::new();
        let logged = propagation::inject(Format::W3c, &ctx, &mut headers).expect("w3c injects");
        assert_eq!(
            headers,
            vec![(
                "traceparent",
                String::from_utf8(fast.to_vec()).expect("ascii")
            )]
        );
        let mut ids = vec![
            ("b3", LogTraceId::Text("stale".to_owned())),
            ("jaeger", LogTraceId::Text("stale".to_owned())),
        ];
        set_log_trace_id(&mut ids, &trace_id);
        assert_eq!(ids.len(), 1);
        assert_eq!((ids[0].0, ids[0].1.to_string()), logged);
    }
    assert_eq!(
        &propagation::traceparent(&trace_id, &span_id, true),
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
}

#[test]
fn only_w3c_propagation_takes_the_fast_path() {
    let propagation = |inject: Vec<Injector>, default_format| Propagation {
        extract: Vec::new(),
        clear: Vec::new(),
        inject,
        default_format,
    };
    assert!(propagation(vec![Injector::Preserve], Format::W3c).injects_only_w3c_when_absent());
    assert!(
        propagation(vec![Injector::Format(Format::W3c)], Format::B3).injects_only_w3c_when_absent()
    );
    assert!(!propagation(vec![Injector::Preserve], Format::B3).injects_only_w3c_when_absent());
    assert!(
        !propagation(
            vec![Injector::Preserve, Injector::Format(Format::B3)],
            Format::W3c
        )
        .injects_only_w3c_when_absent()
    );
    assert!(!propagation(Vec::new(), Format::W3c).injects_only_w3c_when_absent());
}
