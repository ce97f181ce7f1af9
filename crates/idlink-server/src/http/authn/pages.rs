//! The login pages, server-rendered with `maud` (escaped by construction), usable
//! without JavaScript. Every field has a `<label>`; the accessible names are contract
//! (browser tests find fields by them): "Email", "Password", "Continue"; on the
//! emulated identity provider "User ID", "Email", "Email verified", "Name".

use maud::{DOCTYPE, Markup, html};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}\
label{display:block;margin-top:.8rem}input[type=text],input[type=email],input[type=password],input[type=url]\
{width:100%;padding:.4rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}\
.error{color:#a00}.connection{margin:.4rem 0}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · idlink" }
                style { (STYLE) }
            }
            body {
                main { (body) }
            }
        }
    }
}

fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
    }
}

/// Hidden fields every form posts back: the login transaction and the CSRF token.
fn hidden(state: &str, csrf: &str, connection: &str) -> Markup {
    html! {
        input type="hidden" name="state" value=(state);
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="connection" value=(connection);
    }
}

/// The connection chooser: one button per connection, named after it.
pub fn chooser(state: &str, connections: &[String]) -> Markup {
    layout(
        "Log in",
        html! {
            h1 { "Log in" }
            p { "Choose how to log in." }
            @for name in connections {
                form.connection method="get" action="/u/login" {
                    input type="hidden" name="state" value=(state);
                    input type="hidden" name="connection" value=(name);
                    button type="submit" { (name) }
                }
            }
        },
    )
}

/// Email (or username) and password of a database connection.
pub fn login(
    state: &str,
    csrf: &str,
    connection: &str,
    error: Option<&str>,
    signup: bool,
    username: &str,
) -> Markup {
    layout(
        "Log in",
        html! {
            h1 { "Log in" }
            p { "Connection: " (connection) }
            (error_line(error))
            form method="post" action="/u/login" {
                (hidden(state, csrf, connection))
                label for="username" { "Email" }
                input id="username" name="username" type="text" autocomplete="username" required value=(username);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Continue" }
            }
            @if signup {
                p {
                    "Don't have an account? "
                    a href={ "/u/signup?state=" (urlencode(state)) "&connection=" (urlencode(connection)) } { "Sign up" }
                }
            }
        },
    )
}

/// Sign-up on a database connection.
pub fn signup(
    state: &str,
    csrf: &str,
    connection: &str,
    error: Option<&str>,
    email: &str,
) -> Markup {
    layout(
        "Sign up",
        html! {
            h1 { "Sign up" }
            p { "Connection: " (connection) }
            (error_line(error))
            form method="post" action="/u/signup" {
                (hidden(state, csrf, connection))
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="email" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="new-password" required;
                button type="submit" { "Continue" }
            }
            p {
                a href={ "/u/login?state=" (urlencode(state)) "&connection=" (urlencode(connection)) } { "Log in instead" }
            }
        },
    )
}

/// The emulated identity provider: the tester says who the provider signs in.
pub fn identity_provider(state: &str, csrf: &str, connection: &str, error: Option<&str>) -> Markup {
    layout(
        "Emulated identity provider",
        html! {
            h1 { "Emulated identity provider: " (connection) }
            p { "idlink does not talk to " (connection) ". Enter the identity it would return." }
            (error_line(error))
            form method="post" action="/u/login/identity-provider" {
                (hidden(state, csrf, connection))
                label for="user_id" { "User ID" }
                input id="user_id" name="user_id" type="text" required;
                label for="email" { "Email" }
                input id="email" name="email" type="email";
                label for="email_verified" {
                    input id="email_verified" name="email_verified" type="checkbox" value="true";
                    " Email verified"
                }
                label for="name" { "Name" }
                input id="name" name="name" type="text";
                label for="picture" { "Picture URL" }
                input id="picture" name="picture" type="url";
                button type="submit" { "Continue" }
            }
        },
    )
}

/// Linking at sign-in: the other account of the same email, and how to sign in to it
/// (its password, or for an emulated social connection the provider's user ID). Names
/// are contract: heading "Link your accounts", buttons "Link accounts" and "Continue
/// without linking", fields "Password" or "User ID".
pub fn link_prompt(
    csrf: &str,
    email: &str,
    connection: &str,
    database: bool,
    error: Option<&str>,
) -> Markup {
    layout(
        "Link your accounts",
        html! {
            h1 { "Link your accounts" }
            p { "You already have an account with " strong { (email) } ". Sign in to it to link the two." }
            p { "Account: " (connection) }
            (error_line(error))
            form method="post" action="/u/login/link" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="choice" value="link";
                @if database {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                } @else {
                    p { "Emulated identity provider: enter the identity " (connection) " would return." }
                    label for="user_id" { "User ID" }
                    input id="user_id" name="user_id" type="text" required;
                }
                button type="submit" { "Link accounts" }
            }
            form method="post" action="/u/login/link" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="choice" value="decline";
                button type="submit" { "Continue without linking" }
            }
        },
    )
}

/// `response_mode=form_post`: the answer posted to the callback. The script submits it
/// at once; without JavaScript the button does.
pub fn form_post(action: &str, fields: &[(&str, &str)]) -> Markup {
    layout(
        "Continue",
        html! {
            form method="post" action=(action) {
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                noscript { button type="submit" { "Continue" } }
            }
            script { "document.forms[0].submit()" }
        },
    )
}

/// `response_mode=web_message` (auth0-spa-js's silent sign-in in a hidden iframe):
/// the answer posted to the parent window, to the redirect URI's origin only.
/// `message` is JSON with `<` escaped, so it cannot close the script element.
pub fn web_message(origin: &str, message: &str) -> Markup {
    let origin = serde_json::to_string(origin)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    let script = format!("window.parent.postMessage({message}, {origin});");
    layout(
        "Continue",
        html! {
            script { (maud::PreEscaped(script)) }
        },
    )
}

/// An error that cannot go back to the application (no valid redirect URI).
pub fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
        },
    )
}

/// A plain message page (after logout).
pub fn message(title: &str, message: &str) -> Markup {
    layout(title, html! { h1 { (title) } p { (message) } })
}

fn urlencode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let page = login("s\"><script>", "c", "<db>", Some("<b>bad</b>"), true, "").into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>bad"), "{page}");
        assert!(page.contains("<label for=\"password\">Password</label>"));
    }
}
