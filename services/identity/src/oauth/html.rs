//! The provider's server-rendered pages: sign-in, error, sign-out. Plain HTML forms that work
//! without JavaScript, labelled for screen readers, with every interpolated value escaped. Pages
//! are sent with headers that forbid framing (clickjacking), caching and referrers, and a content
//! security policy that allows nothing but the inline style below.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f4;color:#1c1917}\
main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px #0003}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin-top:1rem;font-weight:600}\
input{box-sizing:border-box;width:100%;padding:.6rem;margin-top:.3rem;font-size:1rem;border:1px solid #78716c;border-radius:.3rem}\
input:focus,button:focus{outline:3px solid #2563eb;outline-offset:2px}\
button{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:.3rem;cursor:pointer}\
.error{padding:.75rem;border-radius:.3rem;background:#fee2e2;color:#7f1d1d;border:1px solid #b91c1c}";

/// Escapes `text` for HTML text and double-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// What the sign-in page shows.
pub(crate) struct SignInPage<'a> {
    /// The client's display name.
    pub(crate) client_name: &'a str,
    /// The authorization request, carried through the form as hidden fields.
    pub(crate) hidden: &'a [(&'a str, &'a str)],
    pub(crate) csrf_token: &'a str,
    /// The email typed last time, to fill in again.
    pub(crate) email: &'a str,
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn sign_in_page(page: &SignInPage<'_>) -> String {
    let hidden = hidden_inputs(page.hidden);
    let (error, invalid) = match page.error {
        Some(error) => (
            format!(
                "<p id=\"sign-in-error\" class=\"error\" role=\"alert\">{}</p>",
                escape(error)
            ),
            " aria-invalid=\"true\" aria-describedby=\"sign-in-error\"",
        ),
        None => (String::new(), ""),
    };
    let autofocus_email = if page.email.is_empty() {
        " autofocus"
    } else {
        ""
    };
    let autofocus_password = if page.email.is_empty() {
        ""
    } else {
        " autofocus"
    };
    document(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>\
             <p>to continue to <strong>{client}</strong></p>{error}\
             <form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\"{invalid}{autofocus_email}>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{invalid}{autofocus_password}>\
             <button type=\"submit\">Sign in</button></form>",
            client = escape(page.client_name),
            csrf = escape(page.csrf_token),
            email = escape(page.email),
        ),
    )
}

/// A page for a request that cannot be sent back to the client (unknown client, unregistered
/// redirect URI, expired form): says what went wrong and what to do.
pub(crate) fn error_page(title: &str, message: &str) -> String {
    document(
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>",
            escape(title),
            escape(message)
        ),
    )
}

/// Asks before signing out (a bare link must not sign anyone out: that would let any page do it).
pub(crate) fn sign_out_page(hidden: &[(&str, &str)], csrf_token: &str) -> String {
    let hidden = hidden_inputs(hidden);
    document(
        "Sign out",
        &format!(
            "<h1>Sign out</h1><p>Sign out of Emporium on this browser?</p>\
             <form method=\"post\" action=\"/oauth2/logout\">{hidden}\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            escape(csrf_token)
        ),
    )
}

pub(crate) fn signed_out_page() -> String {
    document(
        "Signed out",
        "<h1>Signed out</h1><p>You have signed out of Emporium on this browser.</p>",
    )
}

/// `<input type="hidden">` elements carrying `fields` through a form.
fn hidden_inputs(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect()
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Emporium</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// `html` as a response with the page security headers, plus `cookies` to set.
pub(crate) fn respond(status: StatusCode, html: String, cookies: &[String]) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = sign_in_page(&SignInPage {
            client_name: "<script>alert(1)</script>",
            hidden: &[("state", "\"><img src=x>")],
            csrf_token: "t",
            email: "a'b@example.com",
            error: Some("<b>bad</b>"),
        });
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<b>bad"));
        assert!(page.contains("a&#39;b@example.com"));
    }

    #[test]
    fn the_form_is_labelled_and_reports_errors_to_assistive_technology() {
        let page = sign_in_page(&SignInPage {
            client_name: "Admin",
            hidden: &[],
            csrf_token: "t",
            email: "",
            error: Some("The email or password is incorrect."),
        });
        assert!(page.contains("<label for=\"email\">"));
        assert!(page.contains("<label for=\"password\">"));
        assert!(page.contains("role=\"alert\""));
        assert!(page.contains("aria-describedby=\"sign-in-error\""));
        assert!(page.contains("lang=\"en\""));
    }
}
