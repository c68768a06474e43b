//! The provider's server-rendered pages: sign-in, error, sign-out. Plain HTML forms that work
//! without JavaScript, labelled for screen readers. They are maud templates: checked when the
//! crate compiles, and every interpolated value is escaped unless wrapped in `PreEscaped`, which
//! only the constant style sheet is, so a new page cannot forget to escape. Pages are sent with
//! headers that forbid framing (clickjacking), caching and referrers, and a content security
//! policy that allows nothing but the inline style below.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::Cookie;
use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f4;color:#1c1917}\
main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px #0003}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin-top:1rem;font-weight:600}\
input{box-sizing:border-box;width:100%;padding:.6rem;margin-top:.3rem;font-size:1rem;border:1px solid #78716c;border-radius:.3rem}\
input:focus,button:focus{outline:3px solid #2563eb;outline-offset:2px}\
button{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:.3rem;cursor:pointer}\
.error{padding:.75rem;border-radius:.3rem;background:#fee2e2;color:#7f1d1d;border:1px solid #b91c1c}";

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

pub(crate) fn sign_in_page(page: &SignInPage<'_>) -> Markup {
    let invalid = page.error.is_some();
    let aria_invalid = invalid.then_some("true");
    let described_by = invalid.then_some("sign-in-error");
    let email_first = page.email.is_empty();
    document(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p { "to continue to " strong { (page.client_name) } }
            @if let Some(error) = page.error {
                p id="sign-in-error" class="error" role="alert" { (error) }
            }
            form method="post" action="/oauth2/authorize" {
                (hidden_inputs(page.hidden))
                input type="hidden" name="csrf_token" value=(page.csrf_token);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required
                    value=(page.email) aria-invalid=[aria_invalid]
                    aria-describedby=[described_by] autofocus[email_first];
                label for="password" { "Password" }
                input id="password" name="password" type="password"
                    autocomplete="current-password" required aria-invalid=[aria_invalid]
                    aria-describedby=[described_by] autofocus[!email_first];
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A page for a request that cannot be sent back to the client (unknown client, unregistered
/// redirect URI, expired form): says what went wrong and what to do.
pub(crate) fn error_page(title: &str, message: &str) -> Markup {
    document(
        title,
        html! {
            h1 { (title) }
            p class="error" role="alert" { (message) }
        },
    )
}

/// Asks before signing out (a bare link must not sign anyone out: that would let any page do it).
pub(crate) fn sign_out_page(hidden: &[(&str, &str)], csrf_token: &str) -> Markup {
    document(
        "Sign out",
        html! {
            h1 { "Sign out" }
            p { "Sign out of Emporium on this browser?" }
            form method="post" action="/oauth2/logout" {
                (hidden_inputs(hidden))
                input type="hidden" name="csrf_token" value=(csrf_token);
                button type="submit" { "Sign out" }
            }
        },
    )
}

pub(crate) fn signed_out_page() -> Markup {
    document(
        "Signed out",
        html! {
            h1 { "Signed out" }
            p { "You have signed out of Emporium on this browser." }
        },
    )
}

/// `<input type="hidden">` elements carrying `fields` through a form.
fn hidden_inputs(fields: &[(&str, &str)]) -> Markup {
    html! {
        @for (name, value) in fields {
            input type="hidden" name=(name) value=(value);
        }
    }
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Emporium" }
                // A constant of this file, not input: the one thing not escaped.
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

/// `page` as a response with the page security headers, plus `cookies` to set.
pub(crate) fn respond(status: StatusCode, page: Markup, cookies: &[Cookie<'_>]) -> Response {
    let mut response = (status, page.into_string()).into_response();
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
    set_cookies(headers, cookies);
    response
}

/// Appends a `Set-Cookie` header for each of `cookies`.
pub(crate) fn set_cookies(headers: &mut HeaderMap, cookies: &[Cookie<'_>]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            headers.append(header::SET_COOKIE, value);
        }
    }
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
        let page = page.into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>bad"), "{page}");
        // maud leaves ' alone: its attribute values are always double-quoted.
        assert!(
            page.contains("value=\"&quot;&gt;&lt;img src=x&gt;\""),
            "{page}"
        );
        assert!(page.contains("value=\"a'b@example.com\""), "{page}");
    }

    #[test]
    fn the_form_is_labelled_and_reports_errors_to_assistive_technology() {
        let page = sign_in_page(&SignInPage {
            client_name: "Admin",
            hidden: &[],
            csrf_token: "t",
            email: "",
            error: Some("The email or password is incorrect."),
        })
        .into_string();
        assert!(page.contains("<label for=\"email\">"));
        assert!(page.contains("<label for=\"password\">"));
        assert!(page.contains("role=\"alert\""));
        assert!(page.contains("aria-describedby=\"sign-in-error\""));
        assert!(page.contains("lang=\"en\""));
    }
}
