//! `GET /v1/openapi.json`: an OpenAPI 3.1 document of the HTTP API, made from the same route
//! table as the router.

use axum::Json;
use serde_json::{Map, Value, json};

/// The document, as JSON.
pub(crate) async fn document() -> Json<Value> {
    Json(build())
}

fn build() -> Value {
    let mut paths = Map::new();
    for route in super::table() {
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        let mut operation = json!({
            "summary": route.summary,
            "responses": {
                "200": { "description": "Done" },
                "default": {
                    "description": "An error, with the HTTP status it has",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            }
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        item[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "herald HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish, request and subscribe over HTTP and Server-Sent Events; streams, consumers and groups; monitoring."
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "integer" },
                                "message": { "type": "string" }
                            }
                        }
                    }
                }
            }
        }
    })
}
