//! JSON ⇄ protobuf for the REST surface, driven by descriptors.
//!
//! The mapping is proto3 JSON with the shop's conventions (SPEC section 2):
//! - field names are the lowerCamelCase JSON names; 64-bit integers are JSON numbers;
//! - every field is written: scalars with their zero value, lists as `[]`, and a value that does
//!   not exist (an unset `optional` or message field) as `null`;
//! - enum values lose their type prefix (`ITEM_SORT_PRICE_L` is `PRICE_L`) and the zero
//!   `…_UNSPECIFIED` value is never accepted from a client;
//! - timestamps are RFC 3339 in UTC with exactly six fractional digits.
//!
//! Reading is strict: a value of the wrong type, out of range, an unknown field or parameter,
//! or a repeated singular parameter is a field violation naming what the client sent, and all
//! violations of a request are reported together.

use base64::Engine;
use pillivery_platform::error::{FieldViolation, Text};
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::{Map, Number, Value as Json};

// ---------------------------------------------------------------------------------------------
// Enums

/// `ItemSort` → `ITEM_SORT_`: the prefix proto style puts on every value.
pub fn enum_prefix(descriptor: &EnumDescriptor) -> String {
    let mut prefix = String::new();
    for (index, character) in descriptor.name().chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            prefix.push('_');
        }
        prefix.push(character.to_ascii_uppercase());
    }
    prefix.push('_');
    prefix
}

/// The values a client may send and will see, in declaration order, without the zero value.
pub fn enum_json_names(descriptor: &EnumDescriptor) -> Vec<String> {
    descriptor
        .values()
        .filter(|value| value.number() != 0)
        .map(|value| strip_enum_prefix(descriptor, value.name()))
        .collect()
}

fn strip_enum_prefix(descriptor: &EnumDescriptor, name: &str) -> String {
    let prefix = enum_prefix(descriptor);
    name.strip_prefix(&prefix).unwrap_or(name).to_owned()
}

fn parse_enum(descriptor: &EnumDescriptor, text: &str) -> Option<i32> {
    let prefix = enum_prefix(descriptor);
    descriptor
        .values()
        .filter(|value| value.number() != 0)
        .find(|value| value.name().strip_prefix(&prefix).unwrap_or(value.name()) == text)
        .map(|value| value.number())
}

fn enum_to_json(descriptor: &EnumDescriptor, number: i32) -> Json {
    if number == 0 {
        return Json::Null;
    }
    match descriptor.get_value(number) {
        Some(value) => Json::String(strip_enum_prefix(descriptor, value.name())),
        None => Json::Number(number.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A message as the client sees it.
pub fn message_to_json(message: &DynamicMessage) -> Json {
    if let Some(json) = well_known_to_json(message) {
        return json;
    }
    let mut object = Map::new();
    for field in message.descriptor().fields() {
        // Lists, maps and plain scalars are always written; a field with presence (optional,
        // message) is `null` when unset.
        let always_written = field.is_list() || field.is_map() || !field.supports_presence();
        let value = if always_written || message.has_field(&field) {
            field_to_json(&field, &message.get_field(&field))
        } else {
            Json::Null
        };
        object.insert(field.json_name().to_owned(), value);
    }
    Json::Object(object)
}

fn field_to_json(field: &FieldDescriptor, value: &Value) -> Json {
    match value {
        Value::List(items) => Json::Array(
            items
                .iter()
                .map(|item| single_to_json(&field.kind(), item))
                .collect(),
        ),
        Value::Map(entries) => {
            let value_kind = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            };
            let mut object = Map::new();
            for (key, item) in entries {
                let key = match key {
                    MapKey::Bool(flag) => flag.to_string(),
                    MapKey::I32(number) => number.to_string(),
                    MapKey::I64(number) => number.to_string(),
                    MapKey::U32(number) => number.to_string(),
                    MapKey::U64(number) => number.to_string(),
                    MapKey::String(text) => text.clone(),
                };
                object.insert(key, single_to_json(&value_kind, item));
            }
            Json::Object(object)
        }
        single => single_to_json(&field.kind(), single),
    }
}

fn single_to_json(kind: &Kind, value: &Value) -> Json {
    match value {
        Value::Bool(flag) => Json::Bool(*flag),
        Value::I32(number) => Json::Number((*number).into()),
        Value::I64(number) => Json::Number((*number).into()),
        Value::U32(number) => Json::Number((*number).into()),
        Value::U64(number) => Json::Number((*number).into()),
        Value::F32(number) => float_to_json(f64::from(*number)),
        Value::F64(number) => float_to_json(*number),
        Value::String(text) => Json::String(text.clone()),
        Value::Bytes(bytes) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Value::EnumNumber(number) => match kind {
            Kind::Enum(descriptor) => enum_to_json(descriptor, *number),
            _ => Json::Number((*number).into()),
        },
        Value::Message(message) => message_to_json(message),
        Value::List(_) | Value::Map(_) => Json::Null,
    }
}

fn float_to_json(number: f64) -> Json {
    Number::from_f64(number).map_or(Json::Null, Json::Number)
}

fn well_known_to_json(message: &DynamicMessage) -> Option<Json> {
    let name = message.descriptor().full_name().to_owned();
    match name.as_str() {
        "google.protobuf.Timestamp" => {
            let timestamp: prost_types::Timestamp = message.transcode_to().ok()?;
            let instant =
                chrono::DateTime::from_timestamp(timestamp.seconds, timestamp.nanos.max(0) as u32)?;
            Some(Json::String(
                instant.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            ))
        }
        "google.protobuf.Value" => {
            let value: prost_types::Value = message.transcode_to().ok()?;
            Some(pillivery_platform::error::value_to_json(&value))
        }
        "google.protobuf.Struct" => {
            let value: prost_types::Struct = message.transcode_to().ok()?;
            Some(pillivery_platform::error::value_to_json(
                &prost_types::Value {
                    kind: Some(prost_types::value::Kind::StructValue(value)),
                },
            ))
        }
        "google.protobuf.Empty" => Some(Json::Object(Map::new())),
        "google.protobuf.Int64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue" => {
            let field = message.descriptor().get_field(1)?;
            Some(single_to_json(&field.kind(), &message.get_field(&field)))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Collects every violation of one request.
#[derive(Default, Debug)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: &str, rejected: Json, reason: Text) {
        self.0.push(FieldViolation::new(field, rejected, reason));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const UNKNOWN_FIELD: Text = Text::new("알 수 없는 필드입니다.", "is not a known field");
const UNKNOWN_PARAMETER: Text = Text::new("알 수 없는 파라미터입니다.", "is not a known parameter");
const REPEATED_PARAMETER: Text = Text::new("한 번만 지정할 수 있습니다.", "may be given only once");

/// Fills `message` from a JSON object (a body). `path` is the JSON path of `json` for messages
/// (`""` at the top, `receiver`, `lines[0]`); `skip` names top-level fields the path already set.
pub fn json_into_message(
    message: &mut DynamicMessage,
    json: &Json,
    path: &str,
    skip: &[String],
    violations: &mut Violations,
) {
    let Json::Object(object) = json else {
        violations.add(
            if path.is_empty() { "body" } else { path },
            json.clone(),
            Text::new("JSON 객체여야 합니다.", "must be a JSON object"),
        );
        return;
    };
    let descriptor = message.descriptor();
    for (key, value) in object {
        let child_path = join_path(path, key);
        let Some(field) = find_field(&descriptor, key) else {
            violations.add(&child_path, value.clone(), UNKNOWN_FIELD);
            continue;
        };
        if path.is_empty() && skip.iter().any(|name| name == field.name()) {
            // Set by the URL path, which wins.
            continue;
        }
        if value.is_null() {
            continue;
        }
        if field.is_map() {
            json_into_map(message, &field, value, &child_path, violations);
        } else if field.is_list() {
            let Json::Array(items) = value else {
                violations.add(
                    &child_path,
                    value.clone(),
                    Text::new("배열이어야 합니다.", "must be an array"),
                );
                continue;
            };
            let mut list = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{child_path}[{index}]");
                if let Some(parsed) = json_to_single(&field.kind(), item, &item_path, violations) {
                    list.push(parsed);
                }
            }
            message.set_field(&field, Value::List(list));
        } else if let Some(parsed) = json_to_single(&field.kind(), value, &child_path, violations) {
            message.set_field(&field, parsed);
        }
    }
}

fn json_into_map(
    message: &mut DynamicMessage,
    field: &FieldDescriptor,
    value: &Json,
    path: &str,
    violations: &mut Violations,
) {
    let Kind::Message(entry) = field.kind() else {
        return;
    };
    let Json::Object(object) = value else {
        violations.add(
            path,
            value.clone(),
            Text::new("JSON 객체여야 합니다.", "must be a JSON object"),
        );
        return;
    };
    let key_kind = entry.map_entry_key_field().kind();
    let value_kind = entry.map_entry_value_field().kind();
    let mut map = std::collections::HashMap::new();
    for (key, item) in object {
        let item_path = format!("{path}.{key}");
        let map_key = match key_kind {
            Kind::String => Some(MapKey::String(key.clone())),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => key.parse().ok().map(MapKey::I32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => key.parse().ok().map(MapKey::I64),
            Kind::Uint32 | Kind::Fixed32 => key.parse().ok().map(MapKey::U32),
            Kind::Uint64 | Kind::Fixed64 => key.parse().ok().map(MapKey::U64),
            Kind::Bool => key.parse().ok().map(MapKey::Bool),
            _ => None,
        };
        let Some(map_key) = map_key else {
            violations.add(
                &item_path,
                Json::String(key.clone()),
                Text::new(
                    "키 형식이 올바르지 않습니다.",
                    "has a key of the wrong type",
                ),
            );
            continue;
        };
        if let Some(parsed) = json_to_single(&value_kind, item, &item_path, violations) {
            map.insert(map_key, parsed);
        }
    }
    message.set_field(field, Value::Map(map));
}

fn json_to_single(
    kind: &Kind,
    json: &Json,
    path: &str,
    violations: &mut Violations,
) -> Option<Value> {
    let parsed = match kind {
        Kind::Message(descriptor) => return json_to_message(descriptor, json, path, violations),
        Kind::Enum(descriptor) => match json.as_str().and_then(|text| parse_enum(descriptor, text))
        {
            Some(number) => Ok(Value::EnumNumber(number)),
            None => Err(one_of(descriptor)),
        },
        Kind::Bool => json.as_bool().map(Value::Bool).ok_or(MUST_BE_BOOLEAN),
        Kind::String => json
            .as_str()
            .map(|text| Value::String(text.to_owned()))
            .ok_or(MUST_BE_STRING),
        Kind::Bytes => json
            .as_str()
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .map(|bytes| Value::Bytes(bytes.into()))
            .ok_or(Text::new(
                "base64 문자열이어야 합니다.",
                "must be a base64 string",
            )),
        Kind::Double | Kind::Float => json
            .as_f64()
            .map(|number| {
                if matches!(kind, Kind::Float) {
                    Value::F32(number as f32)
                } else {
                    Value::F64(number)
                }
            })
            .ok_or(MUST_BE_NUMBER),
        integer => match json {
            Json::Number(number) => integer_value(integer, number.as_i64(), number.as_u64()),
            _ => Err(MUST_BE_INTEGER),
        },
    };
    match parsed {
        Ok(value) => Some(value),
        Err(reason) => {
            violations.add(path, json.clone(), reason);
            None
        }
    }
}

fn json_to_message(
    descriptor: &MessageDescriptor,
    json: &Json,
    path: &str,
    violations: &mut Violations,
) -> Option<Value> {
    let well_known = match descriptor.full_name() {
        "google.protobuf.Timestamp" => Some(match json.as_str() {
            Some(text) => timestamp_from_text(descriptor, text),
            None => Err(MUST_BE_INSTANT),
        }),
        "google.protobuf.Value" => Some({
            let mut message = DynamicMessage::new(descriptor.clone());
            message
                .transcode_from(&pillivery_platform::error::json_to_value(json))
                .map(|()| Value::Message(message))
                .map_err(|_| MUST_BE_STRING)
        }),
        _ => None,
    };
    if let Some(result) = well_known {
        return match result {
            Ok(value) => Some(value),
            Err(reason) => {
                violations.add(path, json.clone(), reason);
                None
            }
        };
    }
    let mut message = DynamicMessage::new(descriptor.clone());
    let before = violations.0.len();
    json_into_message(&mut message, json, path, &[], violations);
    (violations.0.len() == before).then_some(Value::Message(message))
}

fn timestamp_from_text(descriptor: &MessageDescriptor, text: &str) -> Result<Value, Text> {
    let instant = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| MUST_BE_INSTANT)?;
    let mut message = DynamicMessage::new(descriptor.clone());
    message
        .transcode_from(&prost_types::Timestamp {
            seconds: instant.timestamp(),
            nanos: instant.timestamp_subsec_nanos() as i32,
        })
        .map_err(|_| MUST_BE_INSTANT)?;
    Ok(Value::Message(message))
}

const MUST_BE_BOOLEAN: Text = Text::new("true 또는 false여야 합니다.", "must be true or false");
const MUST_BE_STRING: Text = Text::new("문자열이어야 합니다.", "must be a string");
const MUST_BE_NUMBER: Text = Text::new("숫자여야 합니다.", "must be a number");
const MUST_BE_INTEGER: Text = Text::new("정수여야 합니다.", "must be an integer");
const OUT_OF_RANGE: Text = Text::new("허용 범위를 벗어났습니다.", "is out of range");
const MUST_BE_INSTANT: Text =
    Text::new("RFC 3339 시각이어야 합니다.", "must be an RFC 3339 instant");

fn one_of(descriptor: &EnumDescriptor) -> Text {
    let names = enum_json_names(descriptor).join(", ");
    Text::owned(
        format!("다음 중 하나여야 합니다: {names}"),
        format!("must be one of: {names}"),
    )
}

fn integer_value(kind: &Kind, signed: Option<i64>, unsigned: Option<u64>) -> Result<Value, Text> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => match signed {
            Some(number) => i32::try_from(number)
                .map(Value::I32)
                .map_err(|_| OUT_OF_RANGE),
            None if unsigned.is_some() => Err(OUT_OF_RANGE),
            None => Err(MUST_BE_INTEGER),
        },
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => match signed {
            Some(number) => Ok(Value::I64(number)),
            None if unsigned.is_some() => Err(OUT_OF_RANGE),
            None => Err(MUST_BE_INTEGER),
        },
        Kind::Uint32 | Kind::Fixed32 => match unsigned {
            Some(number) => u32::try_from(number)
                .map(Value::U32)
                .map_err(|_| OUT_OF_RANGE),
            None if signed.is_some() => Err(OUT_OF_RANGE),
            None => Err(MUST_BE_INTEGER),
        },
        Kind::Uint64 | Kind::Fixed64 => match unsigned {
            Some(number) => Ok(Value::U64(number)),
            None if signed.is_some() => Err(OUT_OF_RANGE),
            None => Err(MUST_BE_INTEGER),
        },
        _ => Err(MUST_BE_INTEGER),
    }
}

/// Parses one textual value (a path segment or a query parameter) for a field of `kind`.
fn text_to_single(kind: &Kind, text: &str) -> Result<Value, Text> {
    match kind {
        Kind::String => Ok(Value::String(text.to_owned())),
        Kind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(MUST_BE_BOOLEAN),
        },
        Kind::Enum(descriptor) => parse_enum(descriptor, text)
            .map(Value::EnumNumber)
            .ok_or_else(|| one_of(descriptor)),
        Kind::Double => text
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .map(Value::F64)
            .ok_or(MUST_BE_NUMBER),
        Kind::Float => text
            .parse::<f32>()
            .ok()
            .filter(|number| number.is_finite())
            .map(Value::F32)
            .ok_or(MUST_BE_NUMBER),
        Kind::Bytes => base64::engine::general_purpose::URL_SAFE
            .decode(text)
            .map(|bytes| Value::Bytes(bytes.into()))
            .map_err(|_| Text::new("base64 문자열이어야 합니다.", "must be a base64 string")),
        Kind::Message(descriptor) if descriptor.full_name() == "google.protobuf.Timestamp" => {
            timestamp_from_text(descriptor, text)
        }
        Kind::Message(_) => Err(Text::new(
            "이 형식으로 지정할 수 없습니다.",
            "cannot be given this way",
        )),
        integer => {
            let looks_numeric = !text.is_empty()
                && text
                    .strip_prefix('-')
                    .unwrap_or(text)
                    .chars()
                    .all(|c| c.is_ascii_digit());
            if !looks_numeric {
                return Err(MUST_BE_INTEGER);
            }
            match (text.parse::<i64>(), text.parse::<u64>()) {
                (Err(_), Err(_)) => Err(OUT_OF_RANGE),
                (signed, unsigned) => integer_value(integer, signed.ok(), unsigned.ok()),
            }
        }
    }
}

/// Rejected values keep the client's text, but a number-looking text is shown as a number.
fn rejected_text(text: &str) -> Json {
    Json::String(text.to_owned())
}

/// Sets a path variable (`{item_id}`), reporting a violation under the field's JSON name.
pub fn set_from_path(
    message: &mut DynamicMessage,
    field_path: &[String],
    text: &str,
    violations: &mut Violations,
) {
    let mut target = message;
    for (position, name) in field_path.iter().enumerate() {
        let Some(field) = target.descriptor().get_field_by_name(name) else {
            return;
        };
        if position + 1 == field_path.len() {
            match text_to_single(&field.kind(), text) {
                Ok(value) => target.set_field(&field, value),
                Err(reason) => violations.add(field.json_name(), rejected_text(text), reason),
            }
            return;
        }
        let Value::Message(inner) = target.get_field_mut(&field) else {
            return;
        };
        target = inner;
    }
}

/// Fills fields from the query string. Parameter names are JSON names, dotted for nested
/// messages (`receiver.city`); repeated fields take the parameter several times.
pub fn query_into_message(
    message: &mut DynamicMessage,
    query: &str,
    skip: &[String],
    violations: &mut Violations,
) {
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query) {
        Ok(pairs) => pairs,
        Err(_) => {
            violations.add(
                "query",
                Json::String(query.to_owned()),
                Text::new(
                    "쿼리 문자열 형식이 올바르지 않습니다.",
                    "is not a valid query string",
                ),
            );
            return;
        }
    };
    // Keyed by the field, not the spelling: `minPrice` and `min_price` are the same parameter.
    let mut seen: Vec<String> = Vec::new();
    for (name, text) in &pairs {
        let Some(fields) = resolve_parameter(&message.descriptor(), name, skip) else {
            violations.add(name, rejected_text(text), UNKNOWN_PARAMETER);
            continue;
        };
        let Some((field, parents)) = fields.split_last() else {
            continue;
        };
        if !field.is_list() {
            let key = fields
                .iter()
                .map(|field| field.full_name())
                .collect::<Vec<_>>()
                .join("/");
            if seen.contains(&key) {
                violations.add(name, rejected_text(text), REPEATED_PARAMETER);
                continue;
            }
            seen.push(key);
        }
        let Some(target) = nested_mut(message, parents) else {
            continue;
        };
        match text_to_single(&field.kind(), text) {
            Ok(value) if field.is_list() => {
                if let Value::List(items) = target.get_field_mut(field) {
                    items.push(value);
                }
            }
            Ok(value) => target.set_field(field, value),
            Err(reason) => violations.add(name, rejected_text(text), reason),
        }
    }
}

/// The fields a dotted parameter name walks through, ending at a settable field: only
/// singular messages may be walked into, and maps cannot be set from a query string.
fn resolve_parameter(
    descriptor: &MessageDescriptor,
    name: &str,
    skip: &[String],
) -> Option<Vec<FieldDescriptor>> {
    let parts: Vec<&str> = name.split('.').collect();
    let mut current = descriptor.clone();
    let mut fields = Vec::with_capacity(parts.len());
    for (position, part) in parts.iter().enumerate() {
        let field = find_field(&current, part)?;
        if position == 0 && skip.iter().any(|skipped| skipped == field.name()) {
            return None;
        }
        let last = position + 1 == parts.len();
        if field.is_map() {
            return None;
        }
        if !last {
            if field.is_list() {
                return None;
            }
            let Kind::Message(inner) = field.kind() else {
                return None;
            };
            current = inner;
        }
        fields.push(field);
    }
    Some(fields)
}

fn nested_mut<'a>(
    message: &'a mut DynamicMessage,
    parents: &[FieldDescriptor],
) -> Option<&'a mut DynamicMessage> {
    match parents.split_first() {
        None => Some(message),
        Some((first, rest)) => match message.get_field_mut(first) {
            Value::Message(inner) => nested_mut(inner, rest),
            _ => None,
        },
    }
}

fn find_field(descriptor: &MessageDescriptor, key: &str) -> Option<FieldDescriptor> {
    descriptor
        .get_field_by_json_name(key)
        .or_else(|| descriptor.get_field_by_name(key))
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn descriptor(name: &str) -> MessageDescriptor {
        pillivery_proto::descriptor_pool()
            .get_message_by_name(name)
            .unwrap()
    }

    fn search_request(query: &str) -> (DynamicMessage, Violations) {
        let mut message =
            DynamicMessage::new(descriptor("pillivery.catalog.v1.SearchItemsRequest"));
        let mut violations = Violations::default();
        query_into_message(&mut message, query, &[], &mut violations);
        (message, violations)
    }

    #[test]
    fn enum_prefixes_follow_the_type_name() {
        let pool = pillivery_proto::descriptor_pool();
        let sort = pool
            .get_enum_by_name("pillivery.catalog.v1.ItemSort")
            .unwrap();
        assert_eq!(enum_prefix(&sort), "ITEM_SORT_");
        assert_eq!(enum_json_names(&sort)[..2], ["SALES", "NEWEST"]);
        assert_eq!(parse_enum(&sort, "PRICE_L"), Some(4));
        assert_eq!(parse_enum(&sort, "ITEM_SORT_PRICE_L"), None);
        assert_eq!(parse_enum(&sort, "UNSPECIFIED"), None);
    }

    #[test]
    fn query_parameters_fill_the_request() {
        let (message, violations) = search_request(
            "keyword=%EB%A3%A8%ED%85%8C%EC%9D%B8&category=EYE&sort=PRICE_L&page=2&size=20&onSale=true&minPrice=1000",
        );
        assert!(violations.is_empty(), "{violations:?}");
        let request: pillivery_proto::catalog::SearchItemsRequest = message.transcode_to().unwrap();
        assert_eq!(request.keyword.as_deref(), Some("루테인"));
        assert_eq!(request.category, Some(1));
        assert_eq!(request.sort, 4);
        assert_eq!(request.page, Some(2));
        assert_eq!(request.on_sale, Some(true));
        assert_eq!(request.min_price, Some(1000));
        assert_eq!(request.max_price, None);
    }

    #[test]
    fn every_bad_parameter_is_reported_by_name() {
        let (_, violations) = search_request(
            "sort=CHEAPEST&page=one&onSale=yes&category=eye&size=1.5&colour=red&page=3",
        );
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "sort", "page", "onSale", "category", "size", "colour", "page"
            ]
        );
        assert_eq!(violations.0[0].rejected_value, json!("CHEAPEST"));
        assert!(violations.0[0].reason.en.contains("PRICE_L"));
    }

    #[test]
    fn a_parameter_spelt_two_ways_is_still_one_parameter() {
        let (_, violations) = search_request("minPrice=1&min_price=2");
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["min_price"]);
    }

    #[test]
    fn out_of_range_integers_are_rejected_not_wrapped() {
        let (_, violations) = search_request("page=2147483648&minPrice=99999999999999999999");
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["page", "minPrice"]);
    }

    #[test]
    fn responses_write_every_field_with_nulls_for_absent_values() {
        let item = pillivery_proto::catalog::ItemSummary {
            item_id: 9_007_199_254_740_000,
            product_name: "루테인".into(),
            categories: vec![1, 9],
            discount_rate: 0.125,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_795_485_600,
                nanos: 123_456_789,
            }),
            ..Default::default()
        };
        let message = DynamicMessage::new(descriptor("pillivery.catalog.v1.ItemSummary"));
        let mut message = message;
        message.transcode_from(&item).unwrap();
        let json = message_to_json(&message);
        assert_eq!(json["itemId"], json!(9_007_199_254_740_000_i64));
        assert_eq!(json["categories"], json!(["EYE", "ETC"]));
        assert_eq!(json["discountRate"], json!(0.125));
        assert_eq!(json["sales"], json!(0));
        assert_eq!(json["thumbnail"], json!(""));
        assert_eq!(json["createdAt"], json!("2026-11-24T02:00:00.123456Z"));

        let page = DynamicMessage::new(descriptor("pillivery.catalog.v1.ItemPage"));
        assert_eq!(
            message_to_json(&page),
            json!({"data": [], "pageInfo": null})
        );
    }

    #[test]
    fn bodies_are_read_strictly_with_json_paths() {
        let mut message =
            DynamicMessage::new(descriptor("pillivery.catalog.v1.ImportItemsRequest"));
        let mut violations = Violations::default();
        let body = json!({"items": [
            {"productName": "A", "originPrice": 1000, "discountRate": 0.1, "categories": ["EYE"]},
            {"productName": 7, "originPrice": "1000", "categories": ["NOPE"], "colour": "red"}
        ]});
        json_into_message(&mut message, &body, "", &[], &mut violations);
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[1].productName",
                "items[1].originPrice",
                "items[1].categories[0]",
                "items[1].colour"
            ]
        );
    }
}
