//! `GET /api/openapi.json`: OpenAPI 3.1, generated from the same routes the gateway serves, so
//! the document cannot drift from the behaviour.

use std::collections::BTreeMap;

use pillivery_proto::api::AuthPolicy;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use crate::routes::{BodyBinding, Route};
use crate::transcode::enum_json_names;

/// The whole document for `routes`.
pub fn document(routes: &[Route]) -> Json {
    let mut schemas = BTreeMap::new();
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut operation_ids: BTreeMap<String, usize> = BTreeMap::new();
    for route in routes {
        let base_id = format!(
            "{}_{}",
            route.method.parent_service().name(),
            route.method.name()
        );
        let seen = operation_ids.entry(base_id.clone()).or_insert(0);
        *seen += 1;
        let operation_id = if *seen == 1 {
            base_id
        } else {
            format!("{base_id}_{seen}")
        };
        let operation = operation(route, operation_id, &mut schemas);
        paths
            .entry(route.openapi_path())
            .or_default()
            .insert(route.verb.as_str().to_owned(), operation);
    }
    schemas.insert("ErrorBody".to_owned(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Pillivery",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST surface of the Pillivery shop, transcoded to gRPC by the gateway. Generated from the proto contracts."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "responses": {
                "Error": {
                    "description": "Any failure, in the one error shape.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                }
            }
        }
    })
}

fn operation(route: &Route, operation_id: String, schemas: &mut BTreeMap<String, Json>) -> Json {
    let input = route.method.input();
    let mut parameters = Vec::new();
    for field_path in route.path_variables() {
        if let Some(field) = field_at(&input, field_path) {
            parameters.push(json!({
                "name": crate::routes::json_field_path(&route.method, field_path),
                "in": "path",
                "required": true,
                "schema": field_schema(&field, false, schemas),
            }));
        }
    }
    let bound = route.path_bound_fields();
    let query_fields: Vec<FieldDescriptor> = match &route.body {
        BodyBinding::Whole => Vec::new(),
        BodyBinding::None => input.fields().collect(),
        BodyBinding::Field(body_field) => input
            .fields()
            .filter(|field| field.name() != body_field.name())
            .collect(),
    };
    for field in query_fields {
        if bound.iter().any(|name| name == field.name()) {
            continue;
        }
        let scalar_like = !field.is_map()
            && !matches!(field.kind(), Kind::Message(ref inner) if inner.full_name() != "google.protobuf.Timestamp");
        if !scalar_like {
            continue;
        }
        parameters.push(json!({
            "name": field.json_name(),
            "in": "query",
            "required": false,
            "schema": field_schema(&field, false, schemas),
        }));
    }
    if route.idempotency_key_required {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": true,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200}
        }));
    }
    let mut operation = json!({
        "operationId": operation_id,
        "tags": [route.method.parent_service().name()],
        "summary": route.method.name(),
        "parameters": parameters,
        "responses": {},
    });
    match &route.body {
        BodyBinding::None => {}
        BodyBinding::Whole => {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": message_ref(&input, schemas)}}
            });
        }
        BodyBinding::Field(field) => {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": field_schema(field, false, schemas)}}
            });
        }
    }
    let success = route.success_status.to_string();
    if route.redirect_field.is_some() {
        operation["responses"]["302"] = json!({
            "description": "Redirect to the URL in Location.",
            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}
        });
    } else if route.success_status == 204 {
        operation["responses"][&success] = json!({"description": "Done; no content."});
    } else {
        operation["responses"][&success] = json!({
            "description": "Success.",
            "content": {"application/json": {"schema": message_ref(&route.method.output(), schemas)}}
        });
    }
    if !route.response_headers.is_empty() && route.redirect_field.is_none() {
        let headers: Map<String, Json> = route
            .response_headers
            .iter()
            .map(|copied| {
                (
                    copied.name.to_string(),
                    json!({"schema": {"type": "string"}, "description": format!("{}<{}>", copied.prefix, copied.field.json_name())}),
                )
            })
            .collect();
        operation["responses"][&success]["headers"] = Json::Object(headers);
    }
    operation["responses"]["default"] = json!({"$ref": "#/components/responses/Error"});
    operation["security"] = match route.auth {
        AuthPolicy::Public | AuthPolicy::Unspecified => json!([]),
        AuthPolicy::User | AuthPolicy::Admin => json!([{"bearerAuth": []}]),
    };
    if route.auth == AuthPolicy::Admin {
        operation["description"] = json!("Administrators only.");
    }
    operation
}

fn field_at(message: &MessageDescriptor, path: &[String]) -> Option<FieldDescriptor> {
    let mut current = message.clone();
    let mut found = None;
    for name in path {
        let field = current.get_field_by_name(name)?;
        if let Kind::Message(inner) = field.kind() {
            current = inner;
        }
        found = Some(field);
    }
    found
}

fn message_ref(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Json>) -> Json {
    if let Some(schema) = well_known_schema(message) {
        return schema;
    }
    let name = message.full_name().to_owned();
    if !schemas.contains_key(&name) {
        // Insert first so recursive messages terminate.
        schemas.insert(name.clone(), json!({}));
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let nullable = !field.is_list() && !field.is_map() && field.supports_presence();
            properties.insert(
                field.json_name().to_owned(),
                field_schema(&field, nullable, schemas),
            );
            required.push(Json::String(field.json_name().to_owned()));
        }
        schemas.insert(
            name.clone(),
            json!({"type": "object", "properties": properties, "required": required}),
        );
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn field_schema(
    field: &FieldDescriptor,
    nullable: bool,
    schemas: &mut BTreeMap<String, Json>,
) -> Json {
    if field.is_map() {
        let value_kind = match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind(),
            other => other,
        };
        return json!({"type": "object", "additionalProperties": kind_schema(&value_kind, false, schemas)});
    }
    let single = kind_schema(&field.kind(), nullable, schemas);
    if field.is_list() {
        json!({"type": "array", "items": single})
    } else {
        single
    }
}

fn kind_schema(kind: &Kind, nullable: bool, schemas: &mut BTreeMap<String, Json>) -> Json {
    let schema = match kind {
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "integer", "format": "int64"})
        }
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Kind::Enum(descriptor) => {
            let mut names: Vec<Json> = enum_json_names(descriptor)
                .into_iter()
                .map(Json::String)
                .collect();
            if nullable {
                names.push(Json::Null);
                return json!({"type": ["string", "null"], "enum": names});
            }
            json!({"type": "string", "enum": names})
        }
        Kind::Message(message) => {
            let reference = message_ref(message, schemas);
            if nullable {
                return json!({"oneOf": [reference, {"type": "null"}]});
            }
            return reference;
        }
    };
    if nullable {
        let mut schema = schema;
        let base = schema["type"].clone();
        schema["type"] = json!([base, "null"]);
        schema
    } else {
        schema
    }
}

fn well_known_schema(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        _ => return None,
    })
}

fn error_schema() -> Json {
    json!({
        "type": "object",
        "required": ["status", "code", "message", "requestId"],
        "properties": {
            "status": {"type": "integer", "description": "The HTTP status."},
            "code": {"type": "string", "description": "Stable, machine-readable reason, e.g. ITEM_NOT_FOUND."},
            "message": {"type": "string", "description": "Korean by default; English with Accept-Language: en."},
            "fieldErrors": {
                "type": "array",
                "description": "Only for validation failures: every violation at once.",
                "items": {
                    "type": "object",
                    "required": ["field", "rejectedValue", "reason"],
                    "properties": {
                        "field": {"type": "string"},
                        "rejectedValue": {},
                        "reason": {"type": "string"}
                    }
                }
            },
            "requestId": {"type": "string", "description": "Equals the x-request-id response header."}
        }
    })
}
