"""/api/openapi.json: the API as OpenAPI 3.1, built from the routes the app serves and the
rule each declares (signaling.policy): roles, the pydantic models that validate bodies
and query strings, and the resource-level check. Nothing is written twice."""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel

from gridwatch.signaling.policy import Rule, rule_of

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _path(canonical: str) -> tuple[str, list[str]]:
    """aiohttp's `/x/{name:.+}` as OpenAPI's `/x/{name}`, with the parameter names."""
    return _PARAM.sub(lambda m: "{" + m[1] + "}", canonical), _PARAM.findall(canonical)


def _schema(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(rule: Rule, params: list[str], components: dict) -> dict:
    op: dict = {
        "summary": rule.summary,
        "description": (f"Roles: {', '.join(rule.roles)}." if rule.roles
                        else "The centre's other nodes only (a node token)." if rule.internal else "Public.")
        + (f" {rule.owner}" if rule.owner else ""),
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params],
        "responses": {
            "200": {"description": "done"},
            "201": {"description": "made"},
            "default": {"description": "an error", "content": {"application/json": {"schema": ERROR}}},
        },
    }
    if not rule.public:
        op["security"] = [{"bearer": []}, {"cookie": []}]
    if rule.query is not None:
        schema = rule.query.model_json_schema(mode="validation")
        required = set(schema.get("required", []))
        for name, field in rule.query.model_fields.items():
            key = field.alias or name
            op["parameters"].append({"name": key, "in": "query", "required": key in required,
                                     "schema": schema["properties"][key]})  # fmt: skip
    content = {}
    if rule.body is not None:
        content["application/json"] = {"schema": _schema(rule.body, components)}
    for kind in rule.body_types:
        content[kind] = {"schema": {"type": "string", "format": "binary"}}
    if content:
        op["requestBody"] = {"required": True, "content": content}
    return op


def build(app: web.Application) -> dict:
    components: dict = {}
    paths: dict = {}
    for route in app.router.routes():
        rule = rule_of(route.handler)
        if rule is None or route.method == "HEAD":
            continue
        path, params = _path(route.resource.canonical)
        paths.setdefault(path, {})[route.method.lower()] = _operation(rule, params, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gridwatch", "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "gw_session"},
            },
        },
    }
