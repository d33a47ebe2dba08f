//! JSON-RPC 2.0 as MCP's stdio transport carries it: one message per line.
//! Classifies a line (request, notification, response, or the error to answer
//! with) and writes responses, errors and notifications. Pure: no I/O.

use serde_json::{Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// MCP's: a per-request envelope names a revision not spoken here.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// One message from the client. Ids are kept as their JSON text: they are
/// only ever written back and compared.
#[derive(Debug, PartialEq)]
pub enum Message {
    Request {
        id: String,
        method: String,
        params: Map<String, Value>,
    },
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// A response to a request of ours; we send none, so it is dropped.
    Response,
}

/// A message that cannot be served: the error to answer with, and to which id
/// (`null` when the id could not be read), as JSON text.
#[derive(Debug, PartialEq)]
pub struct Fault {
    pub id: String,
    pub code: i64,
    pub message: String,
    /// The error's `data`, as JSON text.
    pub data: Option<String>,
}

impl Fault {
    pub fn new(id: &str, code: i64, message: &str) -> Fault {
        Fault {
            id: id.to_string(),
            code,
            message: message.to_string(),
            data: None,
        }
    }
}

/// Read one line as a JSON-RPC message.
pub fn classify(line: &[u8]) -> Result<Message, Fault> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Fault::new("null", PARSE_ERROR, &format!("parse error: {e}")))?;
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Fault::new(
                "null",
                INVALID_REQUEST,
                "batches are not supported (MCP removed them in 2025-06-18): send one message per line",
            ));
        }
        _ => {
            return Err(Fault::new(
                "null",
                INVALID_REQUEST,
                "a message must be a JSON object",
            ));
        }
    };
    let (mut version, mut id, mut method, mut params, mut reply) = (None, None, None, None, false);
    for (key, value) in object {
        match key.as_str() {
            "jsonrpc" => version = Some(value),
            "id" => id = Some(value),
            "method" => method = Some(value),
            "params" => params = Some(value),
            "result" | "error" => reply = true,
            _ => {}
        }
    }
    let id = match id.map(|id| id_text(&id)) {
        None => None,
        Some(Some(text)) => Some(text),
        Some(None) => {
            return Err(Fault::new(
                "null",
                INVALID_REQUEST,
                "id must be a string or a number",
            ));
        }
    };
    let fault =
        |message: &str| Fault::new(id.as_deref().unwrap_or("null"), INVALID_REQUEST, message);
    if version.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(fault("jsonrpc must be \"2.0\""));
    }
    let method = match method {
        Some(Value::String(method)) => method,
        None if reply => return Ok(Message::Response),
        _ => return Err(fault("method must be a string")),
    };
    let params = match params {
        None => Map::new(),
        Some(Value::Object(params)) => params,
        // Notifications are never answered, errors included.
        Some(_) if id.is_none() => Map::new(),
        Some(Value::Array(_)) => {
            return Err(Fault::new(
                id.as_deref().unwrap_or("null"),
                INVALID_PARAMS,
                "params must be an object (MCP passes parameters by name)",
            ));
        }
        Some(_) => return Err(fault("params must be an object")),
    };
    Ok(match id {
        Some(id) => Message::Request { id, method, params },
        None => Message::Notification { method, params },
    })
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` and a newline; `result` is a
/// JSON object's text. `tagged` adds the `"resultType":"complete"` that
/// revision 2026-07-28 requires.
pub fn result(id: &str, result: &str, tagged: bool) -> Vec<u8> {
    let body = match result.strip_suffix('}') {
        Some(open) if tagged => {
            let comma = if open.trim_end() == "{" { "" } else { "," };
            format!("{open}{comma}\"resultType\":\"complete\"}}")
        }
        _ => result.to_string(),
    };
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{body}}}\n").into_bytes()
}

pub fn error(fault: &Fault) -> Vec<u8> {
    let data = match &fault.data {
        Some(data) => format!(",\"data\":{data}"),
        None => String::new(),
    };
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":{},\"message\":{}{data}}}}}\n",
        fault.id,
        fault.code,
        string(&fault.message)
    )
    .into_bytes()
}

/// A notification; `params` is JSON text.
pub fn notification(method: &str, params: &str) -> Vec<u8> {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{params}}}\n",
        string(method)
    )
    .into_bytes()
}

/// `text` as a JSON string.
pub fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// An id or progress token as JSON text: a string or a number, nothing else.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(string(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (String, i64) {
        let fault = classify(line.as_bytes()).expect_err(line);
        (fault.id, fault.code)
    }

    #[test]
    fn broken_messages_get_the_error_codes_of_json_rpc() {
        let cases: &[(&str, &str, i64)] = &[
            ("{", "null", PARSE_ERROR),
            ("not json", "null", PARSE_ERROR),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                "null",
                INVALID_REQUEST,
            ),
            ("[]", "null", INVALID_REQUEST),
            ("42", "null", INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "null",
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
                "null",
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
                "7",
                INVALID_REQUEST,
            ),
            (r#"{"id":7,"method":"ping"}"#, "7", INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":3}"#,
                r#""a""#,
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":"a"}"#, r#""a""#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}"#,
                "2",
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":"p"}"#,
                "2",
                INVALID_REQUEST,
            ),
        ];
        for (line, id, want) in cases {
            assert_eq!(code(line), (id.to_string(), *want), "{line}");
        }
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        let request = classify(
            br#"{"jsonrpc":"2.0","id":"r1","method":"tools/list","params":{"cursor":"x"}}"#,
        );
        let Ok(Message::Request { id, method, params }) = request else {
            panic!("{request:?}");
        };
        assert_eq!((id.as_str(), method.as_str()), (r#""r1""#, "tools/list"));
        assert_eq!(params.get("cursor"), Some(&Value::from("x")));
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification {
                method: "notifications/initialized".into(),
                params: Map::new()
            })
        );
        // A notification with bad params is still a notification: never answered.
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","method":"n","params":[1]}"#),
            Ok(Message::Notification { .. })
        ));
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            Ok(Message::Response)
        );
    }

    #[test]
    fn written_messages_are_one_json_line_each() {
        let out = result("5", "{}", false);
        assert_eq!(out, b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n");
        let tagged = |r| String::from_utf8(result("5", r, true)).unwrap();
        assert!(tagged("{}").contains(r#""result":{"resultType":"complete"}}"#));
        assert!(tagged(r#"{"a":1}"#).contains(r#""result":{"a":1,"resultType":"complete"}}"#));
        let out = error(&Fault::new(
            r#""x""#,
            METHOD_NOT_FOUND,
            "no \"such\"\nmethod",
        ));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["error"]["code"], -32601);
        assert_eq!(back["error"]["message"], "no \"such\"\nmethod");
        let out = notification("notifications/progress", r#"{"progress":1}"#);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["method"], "notifications/progress");
    }
}
