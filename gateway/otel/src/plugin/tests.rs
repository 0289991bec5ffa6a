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
    assert_eq!(sized::<16>(&short)[..8], [0; 8]);
    assert_eq!(sized::<16>(&short)[8..], short);
    let long = [7u8; 20];
    assert_eq!(sized::<16>(&long), [7u8; 16]);
    assert_eq!(sized::<8>(&[1, 2]), [0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(propagation::to_hex(&[0x0a, 0xff]), "0aff");
}
