//! The one way routes are registered, so the OpenAPI document cannot drift
//! from what is served. Each handler carries a `#[utoipa::path]` attribute
//! (method, path, parameters, bodies, answers); `Routes::add` takes the
//! operation utoipa generated from it (the `__path_<handler>` type) and
//! registers the handler at exactly that method and path, and the document
//! is collected from the same calls. A route added any other way is
//! refused by `tests/it/tidy.rs`.

use std::collections::BTreeMap;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, guard, web};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Schema};

use super::problem::PROBLEM_JSON;

type Schemas = Vec<(String, RefOr<Schema>)>;

/// Routes and their documentation, collected together.
#[derive(Default)]
pub struct Routes {
    resources: BTreeMap<String, Vec<actix_web::Route>>,
    paths: Paths,
    schemas: Schemas,
    /// Answers a query parameter sent to an operation that documents none;
    /// unset, such parameters are ignored (`refusing_parameters`).
    refusal: Option<Box<dyn Fn() -> actix_web::Route>>,
}

fn actix_method(m: &HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `handler` at the method and path of its `#[utoipa::path]`
    /// operation `_op` (pass `module::__path_handler`), and documents it.
    pub fn add<P, H, Args>(&mut self, _op: P, handler: H) -> &mut Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences,
        H: Handler<Args> + Clone,
        Args: FromRequest + 'static,
        H::Output: Responder + 'static,
    {
        let (path, methods) = (P::path(), P::methods());
        let takes_query =
            P::operation().parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
        for m in &methods {
            let route = web::route().method(actix_method(m)).to(handler.clone());
            let routes = self.resources.entry(path.clone()).or_default();
            match self.refusal.as_ref().filter(|_| !takes_query) {
                // Actix tries a resource's routes in order: with no
                // parameter the handler answers, with any the refusal.
                Some(refusal) => {
                    routes.push(route.guard(guard::fn_guard(without_parameters)));
                    routes.push(refusal().method(actix_method(m)));
                }
                None => routes.push(route),
            }
            let mut op = with_problems(P::operation());
            op.operation_id = Some(operation_id(m, &path));
            self.paths.add_path_operation(&path, vec![m.clone()], op);
        }
        P::schemas(&mut self.schemas);
        self
    }

    /// From now on, an operation added that documents no query parameter
    /// answers one with `refusal` (which may first check who asks), rather
    /// than ignoring it: an admin's `DELETE …?dry_run=1` or `?owner=` on a
    /// list must not read as honoured. Operations that take parameters
    /// refuse unknown ones themselves (`ApiQuery` over a type that denies
    /// unknown fields). Not for public routes: apps and mail scanners add
    /// cache-busting and tracking parameters.
    pub fn refusing_parameters<H, Args>(&mut self, refusal: H) -> &mut Self
    where
        H: Handler<Args> + Clone,
        Args: FromRequest + 'static,
        H::Output: Responder + 'static,
    {
        self.refusal = Some(Box::new(move || web::route().to(refusal.clone())));
        self
    }

    /// Registers every route: one resource per path holding its methods'
    /// routes, so a known path asked with another method is a 405.
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        for (path, routes) in self.resources {
            cfg.service(resource(&path, routes));
        }
    }

    /// The OpenAPI 3.1 document of the routes added so far.
    pub fn openapi(&self) -> OpenApi {
        let mut components = Components::new();
        for (name, schema) in self.schemas.iter().cloned() {
            components.schemas.insert(name, schema);
        }
        let mut problem = Schemas::new();
        <super::problem::ProblemBody as utoipa::ToSchema>::schemas(&mut problem);
        components.schemas.extend(problem);
        components
            .schemas
            .insert("ProblemBody".into(), <super::problem::ProblemBody as utoipa::PartialSchema>::schema());
        let bearer = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An access token (JWT), or an API key (`latch_…`)"))
            .build();
        components.security_schemes.insert("bearer".into(), SecurityScheme::Http(bearer));
        let info = utoipa::openapi::InfoBuilder::new()
            .title("latch")
            .version(crate::telemetry::VERSION)
            .description(Some("Accounts, logins, tokens, sessions and administration (see API.md)."))
            .build();
        OpenApiBuilder::new().info(info).paths(self.paths.clone()).components(Some(components)).build()
    }
}

/// Unique per method and path (handler names repeat across modules):
/// `GET /v1/admin/users/{id}` is `get_v1_admin_users_id`.
fn operation_id(method: &HttpMethod, path: &str) -> String {
    let words: Vec<&str> =
        path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    format!("{}_{}", actix_method(method).as_str().to_ascii_lowercase(), words.join("_"))
}

/// A request whose query holds no parameter (none, or only `?`/`&`).
fn without_parameters(ctx: &guard::GuardContext) -> bool {
    ctx.head().uri.query().is_none_or(|q| form_urlencoded::parse(q.as_bytes()).next().is_none())
}

fn resource(path: &str, routes: Vec<actix_web::Route>) -> impl HttpServiceFactory + use<> {
    routes.into_iter().fold(web::resource(path), |r, route| r.route(route))
}

/// Every operation may answer with a problem document (a rate limit, a
/// block, a full queue, a bad body): the catalogue's shape is its default
/// response. A form (a person's page posting back) refused for its CSRF
/// token answers with a page instead.
fn with_problems(mut op: Operation) -> Operation {
    if !op.responses.responses.contains_key("default") {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ProblemBody"))).build();
        let problem =
            ResponseBuilder::new().description("A problem (RFC 9457)").content(PROBLEM_JSON, content);
        op.responses.responses.insert("default".into(), problem.into());
    }
    let form = op.request_body.as_ref().is_some_and(|b| b.content.contains_key(FORM));
    if form && !op.responses.responses.contains_key("403") {
        let page = ResponseBuilder::new()
            .description("The form's token does not match the browser's cookie: a page that says so")
            .content("text/html", ContentBuilder::new().build());
        op.responses.responses.insert("403".into(), page.into());
    }
    op
}

const FORM: &str = "application/x-www-form-urlencoded";
