//! `GET /v1/openapi.json`: an OpenAPI 3.1 description of the JSON API, made from the proto
//! file's descriptors (messages, fields, enums and their comments) so that it cannot drift from
//! what the gateway accepts. Field names are proto3 JSON's (lowerCamelCase; the proto names are
//! accepted too); 64-bit integers are strings, bytes are base64, enums their value names.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto};
use serde_json::{json, Map, Value};

use super::gateway::Method;

const PACKAGE: &str = ".jacolbert.v1.";

pub fn document(methods: &[Method]) -> Value {
    let set =
        prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).expect("the built-in descriptors decode");
    let file = set.file.iter().find(|f| f.package() == "jacolbert.v1").expect("the jacolbert.v1 file is built in");
    let comments = Comments::of(file);
    let mut schemas = Map::new();
    for (i, message) in file.message_type.iter().enumerate() {
        add_message(&mut schemas, message, "", &comments, &[4, i as i32]);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        schemas.insert(e.name().into(), enum_schema(e, comments.at(&[5, i as i32])));
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {
            "code": {"type": "string", "description": "The gRPC status code's name, e.g. InvalidArgument, Unauthenticated."},
            "message": {"type": "string"}}}),
    );
    let mut paths = Map::new();
    for method in methods {
        let (s, service) =
            file.service.iter().enumerate().find(|(_, s)| s.name() == method.service).expect("a service");
        let (m, rpc) = service.method.iter().enumerate().find(|(_, m)| m.name() == method.rpc).expect("an RPC");
        let error = json!({"description": "The gRPC status, as JSON", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        paths.insert(
            format!("/v1/{}", method.name),
            json!({"post": {
                "operationId": method.name,
                "summary": format!("{}.{}", method.service, method.rpc),
                "description": comments.at(&[6, s as i32, 2, m as i32]),
                "requestBody": {"required": false, "content": {"application/json": {"schema": reference(rpc.input_type())}}},
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": reference(rpc.output_type())}}},
                    "default": error,
                },
            }}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "jacolbert",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JaColBERT multi-vector retrieval: the router's gRPC services (jacolbert.v1.Search, \
                jacolbert.v1.Admin) over HTTP with the proto3 JSON mapping. Send `authorization: Bearer KEY` \
                when the router has API keys, and `grpc-timeout` (e.g. `2S`) for a deadline.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"apiKey": []}],
    })
}

/// A JSON Schema reference to the message or enum named `name` (`.jacolbert.v1.Hit`).
fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", name.trim_start_matches(PACKAGE))})
}

/// The proto file's comments by descriptor path (message 4, field 2, enum 5, service 6, …).
struct Comments(Vec<(Vec<i32>, String)>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Comments {
        let locations = file.source_code_info.iter().flat_map(|i| &i.location);
        let text = |l: &prost_types::source_code_info::Location| {
            l.leading_comments().lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_string()
        };
        Comments(locations.map(|l| (l.path.clone(), text(l))).filter(|(_, t)| !t.is_empty()).collect())
    }

    fn at(&self, path: &[i32]) -> &str {
        self.0.iter().find(|(p, _)| p == path).map_or("", |(_, t)| t.as_str())
    }
}

/// `message`'s schema (and those of the messages nested in it, as `Outer.Inner`).
fn add_message(
    schemas: &mut Map<String, Value>,
    message: &DescriptorProto,
    outer: &str,
    comments: &Comments,
    path: &[i32],
) {
    let name = format!("{outer}{}", message.name());
    for (i, nested) in message.nested_type.iter().enumerate() {
        add_message(schemas, nested, &format!("{name}."), comments, &[path, &[3, i as i32]].concat());
    }
    for (i, e) in message.enum_type.iter().enumerate() {
        let nested = format!("{name}.{}", e.name());
        schemas.insert(nested, enum_schema(e, comments.at(&[path, &[4, i as i32]].concat())));
    }
    if message.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    let mut properties = Map::new();
    for (i, field) in message.field.iter().enumerate() {
        let mut schema = field_schema(field, message);
        if let Some(text) = Some(comments.at(&[path, &[2, i as i32]].concat())).filter(|t| !t.is_empty()) {
            schema["description"] = text.into();
        }
        properties.insert(field.json_name().to_string(), schema);
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if let Some(text) = Some(comments.at(path)).filter(|t| !t.is_empty()) {
        schema["description"] = text.into();
    }
    schemas.insert(name, schema);
}

fn enum_schema(e: &prost_types::EnumDescriptorProto, description: &str) -> Value {
    let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
    json!({"type": "string", "enum": names, "description": description})
}

fn field_schema(field: &prost_types::FieldDescriptorProto, within: &DescriptorProto) -> Value {
    let single = match field.r#type() {
        Type::String => json!({"type": "string"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({"type": "integer", "format": "int32"}),
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "format": "uint32"}),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Type::Uint64 | Type::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Type::Float => json!({"type": "number", "format": "float"}),
        Type::Double => json!({"type": "number", "format": "double"}),
        Type::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Type::Enum | Type::Message => {
            let entry = within.nested_type.iter().find(|n| {
                n.options.as_ref().is_some_and(|o| o.map_entry())
                    && field.type_name().ends_with(&format!(".{}", n.name()))
            });
            if let Some(entry) = entry {
                // A map field: an object of its value type.
                return json!({"type": "object", "additionalProperties": field_schema(&entry.field[1], entry)});
            }
            reference(field.type_name())
        }
        Type::Group => json!({}),
    };
    match field.label() {
        Label::Repeated => json!({"type": "array", "items": single}),
        _ => single,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_and_message_is_described() {
        let doc = document(&super::super::gateway::methods());
        let search = &doc["paths"]["/v1/search"]["post"];
        assert_eq!(
            search["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SearchRequest"
        );
        let request = &doc["components"]["schemas"]["SearchRequest"]["properties"];
        assert_eq!(request["filterIds"]["type"], "array");
        assert_eq!(request["include"]["$ref"], "#/components/schemas/Include");
        assert!(request["explain"]["description"].as_str().unwrap().contains("query token"));
        let response = &doc["components"]["schemas"]["SearchResponse"]["properties"];
        assert_eq!(response["tookMicros"]["type"], "string", "64-bit integers are strings");
        // Every reference names a schema that is there.
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "no schema {name}");
        }
    }
}
