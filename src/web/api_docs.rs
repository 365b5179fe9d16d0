//! The API reference page (`/admin/api`): the OpenAPI document the server publishes at `/api/openapi.json`,
//! rendered on the server for people: operations grouped by tag with their parameters, bodies, answers and ways
//! in, then every schema with its fields. Any signed-in admin may read it; it holds no tenant data.

use askama::Template;
use axum::Router;
use axum::routing::get;
use serde_json::Value;

use super::{Chrome, UiSession};
use crate::app::AppState;
use crate::http::openapi::Contract;
use crate::http::page::{PageResult, render};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/api", get(page))
}

struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    params: Vec<Field>,
    body: Option<String>,
    responses: Vec<(String, String, String)>,
    security: String,
}

struct Tag {
    name: String,
    operations: Vec<Operation>,
}

struct Field {
    name: String,
    kind: String,
    required: bool,
    description: String,
}

struct SchemaDoc {
    name: String,
    kind: String,
    description: String,
    fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "admin/api_docs.html")]
struct ApiDocsPage {
    chrome: Chrome,
    title: String,
    version: String,
    description: String,
    operations: usize,
    tags: Vec<Tag>,
    schemas: Vec<SchemaDoc>,
}

async fn page(session: UiSession, axum::Extension(contract): axum::Extension<Contract>) -> PageResult {
    let doc = serde_json::to_value(contract.doc.as_ref()).unwrap_or_default();
    let mut tags: Vec<Tag> = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if !op.is_object() || op.get("responses").is_none() {
                continue;
            }
            operations += 1;
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            let operation = Operation {
                anchor: op["operationId"].as_str().unwrap_or_default().to_owned(),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: text(&op["summary"]),
                description: text(&op["description"]),
                params: op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| Field {
                        name: format!("{} ({})", text(&p["name"]), text(&p["in"])),
                        kind: kind_of(&p["schema"]),
                        required: p["required"].as_bool().unwrap_or(false),
                        description: text(&p["description"]),
                    })
                    .collect(),
                body: op["requestBody"]["content"].as_object().and_then(|content| {
                    content.iter().next().map(|(mime, media)| format!("{mime}: {}", kind_of(&media["schema"])))
                }),
                responses: op["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, r)| {
                        let body = r["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .map(|media| kind_of(&media["schema"]))
                            .unwrap_or_default();
                        (status.clone(), text(&r["description"]), body)
                    })
                    .collect(),
                security: security_of(&op["security"]),
            };
            match tags.iter_mut().find(|t| t.name == tag) {
                Some(t) => t.operations.push(operation),
                None => tags.push(Tag { name: tag, operations: vec![operation] }),
            }
        }
    }
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    let schemas = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            SchemaDoc {
                name: name.clone(),
                kind: kind_of_inline(schema),
                description: text(&schema["description"]),
                fields: schema["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(field, s)| Field {
                        name: field.clone(),
                        kind: kind_of(s),
                        required: required.contains(&field.as_str()),
                        description: text(&s["description"]),
                    })
                    .collect(),
            }
        })
        .collect();
    render(ApiDocsPage {
        chrome: session.chrome("api"),
        title: text(&doc["info"]["title"]),
        version: text(&doc["info"]["version"]),
        description: text(&doc["info"]["description"]),
        operations,
        tags,
        schemas,
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A schema as one short phrase: a referenced schema's name, `array of X`, a type with its format or values.
fn kind_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    kind_of_inline(schema)
}

fn kind_of_inline(schema: &Value) -> String {
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let parts: Vec<String> = options.iter().map(kind_of).filter(|k| !k.is_empty()).collect();
            return parts.join(if combinator == "allOf" { " & " } else { " | " });
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> =
            values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
        return format!("one of: {}", values.join(", "));
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => vec![],
    };
    let mut out: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", kind_of(&schema["items"])),
            "object" if schema["properties"].is_null() => "object".to_owned(),
            other => match schema["format"].as_str() {
                Some(format) => format!("{other} ({format})"),
                None => other.to_owned(),
            },
        })
        .collect();
    if out.is_empty() {
        out.push("any JSON".to_owned());
    }
    out.join(" or ")
}

fn security_of(security: &Value) -> String {
    let Some(options) = security.as_array() else { return String::new() };
    let names: Vec<String> = options
        .iter()
        .map(|option| {
            let keys: Vec<&str> = option.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
            if keys.is_empty() { "anyone".to_owned() } else { keys.join(" + ") }
        })
        .collect();
    names.join(", or ")
}
