//! JSON-RPC 2.0 as MCP's stdio transport carries it: one message per line.
//! Classifies a line (request, notification, response, or the error to answer
//! with) and writes responses, errors and notifications. Pure: no I/O.

use serde_json::{Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// One message from the client.
#[derive(Debug, PartialEq)]
pub enum Message {
    Request {
        id: Value,
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
/// (`null` when the id could not be read).
#[derive(Debug, PartialEq)]
pub struct Fault {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Fault {
    pub fn new(id: Value, code: i64, message: impl Into<String>) -> Fault {
        Fault {
            id,
            code,
            message: message.into(),
        }
    }
}

/// Read one line as a JSON-RPC message.
pub fn classify(line: &[u8]) -> Result<Message, Fault> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Fault::new(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Fault::new(
                Value::Null,
                INVALID_REQUEST,
                "batches are not supported (MCP removed them in 2025-06-18): send one message per line",
            ));
        }
        _ => {
            return Err(Fault::new(
                Value::Null,
                INVALID_REQUEST,
                "a message must be a JSON object",
            ));
        }
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            return Err(Fault::new(
                Value::Null,
                INVALID_REQUEST,
                "id must be a string or a number",
            ));
        }
    };
    let fault =
        |message: &str| Fault::new(id.clone().unwrap_or(Value::Null), INVALID_REQUEST, message);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(fault("jsonrpc must be \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        None if object.contains_key("result") || object.contains_key("error") => {
            return Ok(Message::Response);
        }
        _ => return Err(fault("method must be a string")),
    };
    let params = match object.remove("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params,
        // Notifications are never answered, errors included.
        Some(_) if id.is_none() => Map::new(),
        Some(Value::Array(_)) => {
            return Err(Fault::new(
                id.unwrap_or(Value::Null),
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

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` and a newline; `result` is JSON text.
pub fn result(id: &Value, result: &str) -> Vec<u8> {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}\n").into_bytes()
}

pub fn error(fault: &Fault) -> Vec<u8> {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":{},\"message\":{}}}}}\n",
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
    Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (Value, i64) {
        let fault = classify(line.as_bytes()).expect_err(line);
        (fault.id, fault.code)
    }

    #[test]
    fn broken_messages_get_the_error_codes_of_json_rpc() {
        let cases: &[(&str, Value, i64)] = &[
            ("{", Value::Null, PARSE_ERROR),
            ("not json", Value::Null, PARSE_ERROR),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                Value::Null,
                INVALID_REQUEST,
            ),
            ("[]", Value::Null, INVALID_REQUEST),
            ("42", Value::Null, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Value::Null,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
                Value::Null,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
                Value::from(7),
                INVALID_REQUEST,
            ),
            (
                r#"{"id":7,"method":"ping"}"#,
                Value::from(7),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":3}"#,
                Value::from("a"),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a"}"#,
                Value::from("a"),
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}"#,
                Value::from(2),
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":"p"}"#,
                Value::from(2),
                INVALID_REQUEST,
            ),
        ];
        for (line, id, want) in cases {
            assert_eq!(code(line), (id.clone(), *want), "{line}");
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
        assert_eq!((id, method.as_str()), (Value::from("r1"), "tools/list"));
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
        let out = result(&Value::from(5), "{}");
        assert_eq!(out, b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n");
        let out = error(&Fault::new(
            Value::from("x"),
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
