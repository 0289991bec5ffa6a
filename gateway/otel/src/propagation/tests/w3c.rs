//! W3C Trace Context (`traceparent`), Kong's w3c extractor/injector spec cases.

use super::super::{Extracted, Format};
use super::{
    SPAN_1, TOO_LONG, TRACE_16, assert_injects, clean, ctx, extracted, inject_ctx, injected,
    rejected, round_trip,
};

fn traceparent(value: &str) -> [(&'static str, &str); 1] {
    [("traceparent", value)]
}

fn expected(flags: u8) -> Extracted {
    Extracted {
        w3c_flags: Some(flags),
        ..ctx(TRACE_16, SPAN_1, "", Some(flags & 1 == 1))
    }
}

#[test]
fn extracts_flags_and_sampled_bit() {
    for (flags, hex) in [
        (0x01, "01"),
        (0x09, "09"),
        (0x08, "08"),
        (0xef, "ef"),
        (0x00, "00"),
    ] {
        let value = format!("00-{TRACE_16}-{SPAN_1}-{hex}");
        assert_eq!(
            clean(Format::W3c, &traceparent(&value)),
            expected(flags),
            "{hex}"
        );
    }
}

#[test]
fn upper_case_hex_is_accepted() {
    // Kong's pattern uses `%x`, which takes either case.
    let value = format!(
        "00-{}-{}-0A",
        TRACE_16.to_uppercase(),
        SPAN_1.to_uppercase()
    );
    assert_eq!(clean(Format::W3c, &traceparent(&value)), expected(0x0a));
}

#[test]
fn round_trips_sampled_and_not() {
    for flag in ["01", "00"] {
        let value = format!("00-{TRACE_16}-{SPAN_1}-{flag}");
        round_trip(
            Format::W3c,
            Format::W3c,
            &traceparent(&value),
            ("w3c", TRACE_16),
        );
    }
}

#[test]
fn injects_16_byte_trace_ids() {
    let value = format!("00-{TRACE_16}-{SPAN_1}-01");
    let sent = inject_ctx(TRACE_16, SPAN_1, "", Some(true));
    assert_injects(Format::W3c, &sent, &traceparent(&value), ("w3c", TRACE_16));
    // A 64-bit id is zero-padded: w3c only allows 16 bytes.
    let short = inject_ctx("8448eb211c80319c", SPAN_1, "", None);
    let value = format!("00-00000000000000008448eb211c80319c-{SPAN_1}-00");
    let logged = ("w3c", "00000000000000008448eb211c80319c");
    assert_injects(Format::W3c, &short, &traceparent(&value), logged);
}

#[test]
fn empty_header_is_absent() {
    // Kong's get_context returns nothing for "" without a warning.
    assert_eq!(extracted(Format::W3c, &traceparent("")), Ok(None));
}

#[test]
fn invalid_values_are_rejected_with_kongs_messages() {
    let header = "invalid W3C traceparent header; ignoring.";
    let version = "invalid W3C Trace Context version; ignoring.";
    let trace = "invalid W3C trace context trace ID; ignoring.";
    let parent = "invalid W3C trace context parent ID; ignoring.";
    let flags = "invalid W3C trace context flags; ignoring.";
    let zeros_32 = "0".repeat(32);
    let cases = [
        (format!("vv-{TRACE_16}-{SPAN_1}-00"), header),
        (format!("00-{}-{SPAN_1}-00", "v".repeat(32)), header),
        (format!("00-{TRACE_16}-vvvvvvvvvvvvvvvv-00"), header),
        (format!("00-{TRACE_16}-{SPAN_1}-vv"), header),
        (format!("00-{TRACE_16}-{SPAN_1}-01-00"), header),
        (format!("00-{TRACE_16}-{SPAN_1}"), header),
        (format!("00-{TRACE_16}--01"), header),
        (format!(" 00-{TRACE_16}-{SPAN_1}-01"), header),
        (format!("00-123-{SPAN_1}-00"), trace),
        (format!("00-{zeros_32}-{SPAN_1}-00"), trace),
        (format!("00-{TOO_LONG}-{SPAN_1}-00"), trace),
        (format!("00-{TRACE_16}-123-00"), parent),
        (format!("00-{TRACE_16}-{TOO_LONG}-00"), parent),
        (format!("00-{TRACE_16}-0000000000000000-00"), parent),
        (format!("01-{TRACE_16}-{SPAN_1}-00"), version),
        (format!("0-{TRACE_16}-{SPAN_1}-00"), version),
        (format!("00-{TRACE_16}-{SPAN_1}-000"), flags),
        (format!("00-{TRACE_16}-{SPAN_1}-0"), flags),
    ];
    for (value, warning) in &cases {
        rejected(Format::W3c, &traceparent(value), warning);
    }
}

#[test]
fn injection_needs_trace_and_span_ids() {
    let no_trace = inject_ctx("", SPAN_1, "", Some(false));
    assert_eq!(
        injected(Format::W3c, &no_trace),
        Err("w3c injector context is invalid: field trace_id not found in context".into())
    );
    let no_span = inject_ctx(TRACE_16, "", "", Some(false));
    assert_eq!(
        injected(Format::W3c, &no_span),
        Err("w3c injector context is invalid: field span_id not found in context".into())
    );
}
