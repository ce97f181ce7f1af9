//! The identity provider names of Auth0 (`UserIdentityProviderEnum`), kept open.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! providers {
    ($( $(#[$meta:meta])* $variant:ident => $wire:literal, social: $social:literal; )*) => {
        /// An identity provider, as Auth0 names it on the wire (`google-oauth2`, `auth0`, …).
        ///
        /// Holds the 55 values of Auth0's current `UserIdentityProviderEnum`, the 7 retired
        /// ones older SDKs still send, and [`Other`](Self::Other) for any name not known
        /// yet: the set is open, so every string round-trips unchanged.
        ///
        /// ```
        /// use idlink_types::UserIdentityProviderEnum as Provider;
        ///
        /// let p: Provider = serde_json::from_str("\"google-oauth2\"").unwrap();
        /// assert_eq!(p, Provider::GoogleOauth2);
        /// assert_eq!(p.as_str(), "google-oauth2");
        /// assert!(p.is_social());
        ///
        /// let custom: Provider = "my-new-idp".parse().unwrap();
        /// assert_eq!(custom, Provider::Other("my-new-idp".into()));
        /// assert_eq!(serde_json::to_string(&custom).unwrap(), "\"my-new-idp\"");
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum UserIdentityProviderEnum {
            $( $(#[$meta])* #[doc = concat!("`", $wire, "`")] $variant, )*
            /// A provider name this version does not know; kept verbatim.
            Other(String),
        }

        impl UserIdentityProviderEnum {
            /// Every named variant (not [`Other`](Self::Other)), in Auth0's order.
            ///
            /// ```
            /// assert_eq!(idlink_types::UserIdentityProviderEnum::ALL.len(), 62);
            /// ```
            pub const ALL: &'static [UserIdentityProviderEnum] = &[ $( Self::$variant, )* ];

            /// The wire name, e.g. `"auth0-oidc"`.
            ///
            /// ```
            /// use idlink_types::UserIdentityProviderEnum as Provider;
            /// assert_eq!(Provider::Auth0Oidc.as_str(), "auth0-oidc");
            /// ```
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )*
                    Self::Other(name) => name,
                }
            }

            /// Whether Auth0 counts this provider as social (`isSocial` on identities).
            ///
            /// ```
            /// use idlink_types::UserIdentityProviderEnum as Provider;
            /// assert!(Provider::Github.is_social());
            /// assert!(!Provider::Auth0.is_social());
            /// ```
            pub fn is_social(&self) -> bool {
                match self {
                    $( Self::$variant => $social, )*
                    Self::Other(_) => false,
                }
            }

            /// Parses a wire name; unknown names become [`Other`](Self::Other).
            ///
            /// ```
            /// use idlink_types::UserIdentityProviderEnum as Provider;
            /// assert_eq!(Provider::from_wire("auth0"), Provider::Auth0);
            /// ```
            pub fn from_wire(name: &str) -> Self {
                match name {
                    $( $wire => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

providers! {
    Ad => "ad", social: false;
    Adfs => "adfs", social: false;
    Amazon => "amazon", social: true;
    Apple => "apple", social: true;
    Dropbox => "dropbox", social: true;
    Bitbucket => "bitbucket", social: true;
    Auth0Oidc => "auth0-oidc", social: false;
    Auth0 => "auth0", social: false;
    Baidu => "baidu", social: true;
    Bitly => "bitly", social: true;
    Box => "box", social: true;
    Custom => "custom", social: false;
    Daccount => "daccount", social: true;
    Dwolla => "dwolla", social: true;
    Email => "email", social: false;
    EvernoteSandbox => "evernote-sandbox", social: true;
    Evernote => "evernote", social: true;
    Exact => "exact", social: true;
    Facebook => "facebook", social: true;
    Fitbit => "fitbit", social: true;
    Github => "github", social: true;
    GoogleApps => "google-apps", social: false;
    GoogleOauth2 => "google-oauth2", social: true;
    Instagram => "instagram", social: true;
    Ip => "ip", social: false;
    Line => "line", social: true;
    Linkedin => "linkedin", social: true;
    Oauth1 => "oauth1", social: false;
    Oauth2 => "oauth2", social: false;
    Office365 => "office365", social: false;
    Oidc => "oidc", social: false;
    Okta => "okta", social: false;
    Paypal => "paypal", social: true;
    PaypalSandbox => "paypal-sandbox", social: true;
    Pingfederate => "pingfederate", social: false;
    Planningcenter => "planningcenter", social: true;
    SalesforceCommunity => "salesforce-community", social: true;
    SalesforceSandbox => "salesforce-sandbox", social: true;
    Salesforce => "salesforce", social: true;
    Samlp => "samlp", social: false;
    Sharepoint => "sharepoint", social: false;
    Shopify => "shopify", social: true;
    Shop => "shop", social: true;
    Sms => "sms", social: false;
    Soundcloud => "soundcloud", social: true;
    Thirtysevensignals => "thirtysevensignals", social: true;
    Twitter => "twitter", social: true;
    Untappd => "untappd", social: true;
    Vkontakte => "vkontakte", social: true;
    Waad => "waad", social: false;
    Weibo => "weibo", social: true;
    Windowslive => "windowslive", social: true;
    Wordpress => "wordpress", social: true;
    Yahoo => "yahoo", social: true;
    Yandex => "yandex", social: true;
    /// Retired; older SDKs still send it.
    Aol => "aol", social: true;
    /// Retired; older SDKs still send it.
    Flickr => "flickr", social: true;
    /// Retired; older SDKs still send it.
    Miicard => "miicard", social: true;
    /// Retired; older SDKs still send it.
    Renren => "renren", social: true;
    /// Retired; older SDKs still send it.
    Thecity => "thecity", social: true;
    /// Retired; older SDKs still send it.
    ThecitySandbox => "thecity-sandbox", social: true;
    /// Retired; older SDKs still send it.
    Yammer => "yammer", social: true;
}

impl fmt::Display for UserIdentityProviderEnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserIdentityProviderEnum {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_wire(s))
    }
}

impl From<&str> for UserIdentityProviderEnum {
    fn from(s: &str) -> Self {
        Self::from_wire(s)
    }
}

impl Serialize for UserIdentityProviderEnum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UserIdentityProviderEnum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::from_wire(&name))
    }
}

/// On the wire a provider is a plain string; the set is open, so the schema lists no
/// values.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for UserIdentityProviderEnum {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .description(Some(
                "An identity provider name, e.g. `google-oauth2` (an open set).",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for UserIdentityProviderEnum {}

#[cfg(test)]
mod tests {
    use super::UserIdentityProviderEnum as P;

    #[test]
    fn every_variant_round_trips_through_its_wire_name() {
        for p in P::ALL {
            let json = serde_json::to_string(p).unwrap();
            let back: P = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, p, "{json}");
        }
        assert_eq!(P::ALL.len(), 55 + 7);
    }

    #[test]
    fn wire_names_are_unique() {
        let mut names: Vec<&str> = P::ALL.iter().map(P::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), P::ALL.len());
    }

    #[test]
    fn unknown_names_stay_verbatim() {
        let p: P = serde_json::from_str("\"Some-Future-IdP\"").unwrap();
        assert_eq!(p, P::Other("Some-Future-IdP".into()));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"Some-Future-IdP\"");
    }
}
