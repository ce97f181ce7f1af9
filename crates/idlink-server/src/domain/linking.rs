//! The linking rules, as pure functions: given the users as they are inside the
//! transaction, decide what changes (or which error the request gets). The store applies
//! the plan; nothing here does I/O.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::invented;
use super::merge::{self, MergePolicy};
use super::model::{DATABASE_STRATEGY, Identity, IdentityKey, LinkState, Profile, UserRecord};

/// How links and unlinks treat what Auth0 drops: the tenant's `[linking]` settings.
/// The default is Auth0's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkingPolicy {
    /// What an unlink recreates.
    pub unlink: UnlinkMode,
    /// What a link does with the secondary's metadata (a request may override it).
    pub merge: MergePolicy,
    /// Whether a sign-in on idlink's login pages may offer to link two accounts of the
    /// same verified email (see `docs/linking-at-sign-in.md`).
    pub at_sign_in: super::sign_in_linking::AtSignIn,
}

/// What an unlink recreates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnlinkMode {
    /// As Auth0: a new user from the identity's `profileData` (metadata, `created_at`
    /// and login counts are gone).
    #[default]
    Auth0,
    /// The user as it was before the link (its metadata back), with the profile
    /// changes its identity received while linked. Needs the snapshot that links made
    /// under this setting keep; earlier links unlink as in Auth0.
    Restore,
}

/// The values a link's metadata merge threw away, at their paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discarded {
    pub user_metadata: Map<String, Value>,
    pub app_metadata: Map<String, Value>,
}

/// What linking a secondary user into a primary changes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    /// The secondary user, which disappears.
    pub secondary_user_id: String,
    /// The secondary's identities as they become on the primary, in order, starting at
    /// position `first_position`.
    pub moved: Vec<Identity>,
    /// Position of the first moved identity on the primary.
    pub first_position: usize,
    /// The primary's identities after the link (the response body).
    pub identities: Vec<Identity>,
    /// The primary's `user_metadata` after the link.
    pub user_metadata: Option<Map<String, Value>>,
    /// The primary's `app_metadata` after the link.
    pub app_metadata: Map<String, Value>,
    /// Whether the merge changed the primary's metadata (then it is written).
    pub metadata_changed: bool,
    /// What the merge threw away (the whole secondary's metadata under `none`).
    pub discarded: Discarded,
}

impl LinkPlan {
    /// The primary as it is after this link (what a link preview shows).
    pub fn primary_after(&self, primary: &UserRecord) -> UserRecord {
        let mut identities = primary.identities.clone();
        identities.extend(self.moved.iter().cloned());
        UserRecord {
            user_metadata: self.user_metadata.clone(),
            app_metadata: self.app_metadata.clone(),
            identities,
            ..primary.clone()
        }
    }
}

/// How a link request designates its secondary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProof {
    /// The secondary's own ID token (`link_with`): it proves the caller signed in as the
    /// secondary, which a blocked user cannot do, so a blocked secondary is refused.
    IdToken,
    /// Named by a caller allowed to act on every user (`update:users`); `connection_id`,
    /// when given, must be the named identity's connection.
    Named { connection_id: Option<String> },
}

/// Decides a link.
///
/// `secondary` is the standalone user whose main identity `target` names, if there is
/// one, as loaded inside the link's transaction (so a block that lands while the request
/// runs still counts). `policy` says what becomes of the secondary's metadata.
pub fn plan_link(
    primary: &UserRecord,
    target: &IdentityKey,
    proof: &LinkProof,
    secondary: Option<&UserRecord>,
    policy: &LinkingPolicy,
) -> Result<LinkPlan> {
    let (main, linked) = primary
        .identities
        .split_first()
        .ok_or_else(|| Error::Inconsistent(format!("user {} has no identity", primary.user_id)))?;
    if main.is(target) {
        return Err(Error::SameIdentity);
    }
    if linked.iter().any(|identity| identity.is(target)) {
        return Err(Error::IdentityConflict);
    }
    let secondary = secondary
        .filter(|user| user.user_id != primary.user_id)
        .ok_or(Error::SecondaryNotFound)?;
    let (secondary_main, secondary_linked) =
        secondary.identities.split_first().ok_or_else(|| {
            Error::Inconsistent(format!("user {} has no identity", secondary.user_id))
        })?;
    if !secondary_main.is(target) {
        return Err(Error::SecondaryNotFound);
    }
    match proof {
        LinkProof::IdToken if secondary.blocked => return Err(Error::BlockedSecondary),
        LinkProof::Named {
            connection_id: Some(id),
        } if *id != secondary_main.connection_id => return Err(Error::SecondaryNotFound),
        _ => {}
    }

    let mut moved = Vec::with_capacity(secondary.identities.len());
    moved.push(Identity {
        profile_data: Some(secondary.profile.to_profile_data()),
        link_state: LinkState::of(secondary, policy.unlink == UnlinkMode::Restore),
        ..secondary_main.clone()
    });
    moved.extend(secondary_linked.iter().cloned());

    let none = Map::new();
    let users = merge::merge(
        primary.user_metadata.as_ref().unwrap_or(&none),
        secondary.user_metadata.as_ref().unwrap_or(&none),
        policy.merge,
    );
    let apps = merge::merge(&primary.app_metadata, &secondary.app_metadata, policy.merge);
    // A primary that never had user_metadata keeps showing none unless the merge gave
    // it some.
    let user_metadata =
        (primary.user_metadata.is_some() || !users.kept.is_empty()).then_some(users.kept);
    let metadata_changed =
        user_metadata != primary.user_metadata || apps.kept != primary.app_metadata;

    let mut identities = primary.identities.clone();
    identities.extend(moved.iter().cloned());
    Ok(LinkPlan {
        secondary_user_id: secondary.user_id.clone(),
        moved,
        first_position: primary.identities.len(),
        identities: answered_identities(&primary.profile, identities),
        user_metadata,
        app_metadata: apps.kept,
        metadata_changed,
        discarded: Discarded {
            user_metadata: users.discarded,
            app_metadata: apps.discarded,
        },
    })
}

/// What unlinking an identity from a primary changes.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlinkPlan {
    /// The identity that leaves, as it was on the primary.
    pub removed: Identity,
    /// Its position on the primary (identities after it move up by one).
    pub position: usize,
    /// The standalone user it becomes (its only identity is `removed`, as a main one).
    pub new_user: UserRecord,
    /// The primary's remaining identities, in order (the response body).
    pub remaining: Vec<Identity>,
}

/// Decides an unlink. `now` stamps the recreated user; under [`UnlinkMode::Restore`] it
/// is the user as it was before the link, when the link kept its snapshot.
pub fn plan_unlink(
    primary: &UserRecord,
    target: &IdentityKey,
    now: &str,
    mode: UnlinkMode,
) -> Result<UnlinkPlan> {
    let index = primary
        .identities
        .iter()
        .position(|identity| identity.is(target))
        // Not on the user: a no-op for the caller (see `unlink_no_op_answer`); the
        // error makes the store write nothing.
        .ok_or(Error::IdentityNotFound)?;
    if index == 0 {
        return Err(Error::MainIdentityRemoval);
    }
    let mut remaining = primary.identities.clone();
    let removed = remaining.remove(index);
    let snapshot = match mode {
        UnlinkMode::Restore => removed.link_state.restore.as_deref(),
        UnlinkMode::Auth0 => None,
    };
    let mut profile = removed
        .profile_data
        .as_ref()
        .map(Profile::from_profile_data)
        .unwrap_or_default();
    if let Some(snapshot) = snapshot {
        snapshot.restore_invented(&mut profile);
    }
    // profileData holds only supplied attributes; a recreated database user gets the
    // defaults every database user has, as at creation.
    if removed.provider == DATABASE_STRATEGY {
        invented::fill_database_defaults(&mut profile);
    }
    let mut new_user = UserRecord {
        user_id: removed.key().to_user_id(),
        profile,
        user_metadata: None,
        app_metadata: Map::new(),
        blocked: removed.link_state.blocked,
        // A block the identity carried while linked is one that was set.
        blocked_ever_set: removed.link_state.blocked,
        last_login: None,
        logins_count: 0,
        last_password_reset: None,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        identities: vec![Identity {
            profile_data: None,
            link_state: LinkState::default(),
            ..removed.clone()
        }],
    };
    if let Some(snapshot) = snapshot {
        snapshot.restore_into(&mut new_user);
    }
    Ok(UnlinkPlan {
        removed,
        position: index,
        new_user,
        remaining: answered_identities(&primary.profile, remaining),
    })
}

/// The answer to an unlink of an identity that is not on the user: nothing changes and
/// the user's identities come back as for a real unlink (Auth0 answers 200, recorded:
/// ruby-auth0's unlink with a `provider|`-prefixed path id).
pub fn unlink_no_op_answer(primary: &UserRecord) -> Vec<Identity> {
    answered_identities(&primary.profile, primary.identities.clone())
}

/// `identities` as link and unlink answer them: every one with its `profileData`, the
/// main identity's being the user's own supplied root attributes with their current
/// values (recorded: every link and unlink answer). `GET user` differs: there the main
/// identity has none (see [`Identity::to_wire`]).
fn answered_identities(main_profile: &Profile, mut identities: Vec<Identity>) -> Vec<Identity> {
    for (position, identity) in identities.iter_mut().enumerate() {
        if position == 0 {
            identity.profile_data = Some(main_profile.to_profile_data());
        } else {
            identity.profile_data.get_or_insert_with(Map::new);
        }
    }
    identities
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlink_types::UserId;
    use serde_json::json;

    fn identity(provider: &str, id: UserId) -> Identity {
        Identity {
            provider: provider.into(),
            user_id: id,
            connection_id: format!("con_{provider:0<16}"),
            connection: provider.into(),
            is_social: provider != "auth0",
            profile_data: None,
            link_state: LinkState::default(),
        }
    }

    fn user(provider: &str, id: &str, email: &str) -> UserRecord {
        UserRecord {
            user_id: format!("{provider}|{id}"),
            profile: Profile {
                email: Some(email.into()),
                email_verified: true,
                ..Profile::default()
            },
            user_metadata: json!({"k": 1}).as_object().cloned(),
            app_metadata: Map::new(),
            blocked: false,
            blocked_ever_set: false,
            last_login: None,
            logins_count: 0,
            last_password_reset: None,
            created_at: "t0".into(),
            updated_at: "t0".into(),
            identities: vec![identity(provider, UserId::from(id))],
        }
    }

    #[test]
    fn link_moves_every_secondary_identity_to_the_end() {
        let primary = user("auth0", "aaa", "p@example.com");
        let mut secondary = user("google-oauth2", "111", "s@example.com");
        let mut github = identity("github", UserId::Integer(7));
        github.profile_data = Some(
            json!({"email": "gh@example.com"})
                .as_object()
                .unwrap()
                .clone(),
        );
        secondary.identities.push(github.clone());

        let plan = plan_link(
            &primary,
            &IdentityKey::new("google-oauth2", "111"),
            &LinkProof::Named {
                connection_id: None,
            },
            Some(&secondary),
            &LinkingPolicy::default(),
        )
        .unwrap();
        assert_eq!(plan.secondary_user_id, "google-oauth2|111");
        assert_eq!(plan.first_position, 1);
        let providers: Vec<_> = plan
            .identities
            .iter()
            .map(|i| i.provider.as_str())
            .collect();
        assert_eq!(providers, ["auth0", "google-oauth2", "github"]);
        assert_eq!(
            plan.identities[1].profile_data.as_ref().unwrap()["email"],
            "s@example.com"
        );
        assert_eq!(
            plan.identities[2], github,
            "already-linked identities keep their profileData"
        );
        assert_eq!(
            plan.identities[0].profile_data,
            Some(primary.profile.to_profile_data()),
            "the primary's identity carries the primary's own profile"
        );
    }

    #[test]
    fn link_rejections() {
        let mut primary = user("auth0", "aaa", "p@example.com");
        primary
            .identities
            .push(identity("github", UserId::Integer(7)));
        let secondary = user("google-oauth2", "111", "s@example.com");
        let key = |p: &str, id: &str| IdentityKey::new(p, id);
        let by_name = LinkProof::Named {
            connection_id: None,
        };

        let same = plan_link(
            &primary,
            &key("auth0", "aaa"),
            &by_name,
            Some(&primary),
            &LinkingPolicy::default(),
        );
        assert!(matches!(same, Err(Error::SameIdentity)));
        let conflict = plan_link(
            &primary,
            &key("github", "7"),
            &by_name,
            None,
            &LinkingPolicy::default(),
        );
        assert!(matches!(conflict, Err(Error::IdentityConflict)));
        let missing = plan_link(
            &primary,
            &key("google-oauth2", "999"),
            &by_name,
            None,
            &LinkingPolicy::default(),
        );
        assert!(matches!(missing, Err(Error::SecondaryNotFound)));
        let wrong_connection = plan_link(
            &primary,
            &key("google-oauth2", "111"),
            &LinkProof::Named {
                connection_id: Some("con_XXXXXXXXXXXXXXXX".into()),
            },
            Some(&secondary),
            &LinkingPolicy::default(),
        );
        assert!(matches!(wrong_connection, Err(Error::SecondaryNotFound)));
    }

    #[test]
    fn unlink_recreates_a_standalone_user_without_metadata() {
        let primary = user("auth0", "aaa", "p@example.com");
        let secondary = user("github", "7", "gh@example.com");
        let linked = plan_link(
            &primary,
            &IdentityKey::new("github", "7"),
            &LinkProof::Named {
                connection_id: None,
            },
            Some(&secondary),
            &LinkingPolicy::default(),
        )
        .unwrap();
        let primary = UserRecord {
            identities: linked.identities,
            ..primary
        };

        let plan = plan_unlink(
            &primary,
            &IdentityKey::new("github", "7"),
            "t1",
            UnlinkMode::Auth0,
        )
        .unwrap();
        assert_eq!(plan.remaining.len(), 1);
        assert_eq!(
            plan.remaining[0].profile_data.as_ref().unwrap()["email"],
            "p@example.com"
        );
        assert_eq!(
            unlink_no_op_answer(&primary)[1]
                .profile_data
                .as_ref()
                .unwrap()["email"],
            "gh@example.com"
        );
        assert_eq!(plan.new_user.user_id, "github|7");
        assert_eq!(plan.new_user.profile, secondary.profile);
        assert_eq!(plan.new_user.user_metadata, None);
        assert_eq!(plan.new_user.identities[0].profile_data, None);

        assert!(matches!(
            plan_unlink(
                &primary,
                &IdentityKey::new("auth0", "aaa"),
                "t1",
                UnlinkMode::Auth0
            ),
            Err(Error::MainIdentityRemoval)
        ));

        // A database secondary comes back with the defaults its profileData left out.
        let db_secondary = user("auth0", "bbb", "Bee@example.com");
        let linked = plan_link(
            &primary,
            &IdentityKey::new("auth0", "bbb"),
            &LinkProof::Named {
                connection_id: None,
            },
            Some(&db_secondary),
            &LinkingPolicy::default(),
        )
        .unwrap();
        let with_db = UserRecord {
            identities: linked.identities,
            ..primary.clone()
        };
        let plan = plan_unlink(
            &with_db,
            &IdentityKey::literal("auth0", "bbb"),
            "t1",
            UnlinkMode::Auth0,
        )
        .unwrap();
        assert_eq!(
            plan.new_user.profile.name.as_deref(),
            Some("Bee@example.com")
        );
        assert_eq!(plan.new_user.profile.nickname.as_deref(), Some("Bee"));
        assert!(plan.new_user.profile.invented.contains("picture"));
        assert!(matches!(
            plan_unlink(
                &primary,
                &IdentityKey::new("github", "8"),
                "t1",
                UnlinkMode::Auth0
            ),
            Err(Error::IdentityNotFound)
        ));
    }

    #[test]
    fn a_blocked_secondary_needs_an_admin_and_stays_blocked_through_unlink() {
        let primary = user("auth0", "aaa", "p@example.com");
        let secondary = UserRecord {
            blocked: true,
            ..user("auth0", "bbb", "s@example.com")
        };
        let target = IdentityKey::new("auth0", "bbb");
        let by_token = plan_link(
            &primary,
            &target,
            &LinkProof::IdToken,
            Some(&secondary),
            &LinkingPolicy::default(),
        );
        assert!(matches!(by_token, Err(Error::BlockedSecondary)));

        let by_name = LinkProof::Named {
            connection_id: None,
        };
        let plan = plan_link(
            &primary,
            &target,
            &by_name,
            Some(&secondary),
            &LinkingPolicy::default(),
        )
        .unwrap();
        assert!(plan.moved[0].link_state.blocked);
        assert!(
            !plan.moved[0]
                .profile_data
                .as_ref()
                .unwrap()
                .contains_key("blocked"),
            "the state is not part of profileData"
        );
        let primary = UserRecord {
            identities: plan.identities,
            ..primary
        };
        let unlinked = plan_unlink(&primary, &target, "t1", UnlinkMode::Auth0).unwrap();
        assert!(
            unlinked.new_user.blocked,
            "blocked survives link and unlink"
        );
        assert!(unlinked.new_user.identities[0].link_state.is_default());
    }

    fn link_then_unlink(policy: LinkingPolicy) -> (UserRecord, UserRecord, LinkPlan) {
        let primary = user("auth0", "aaa", "p@example.com");
        let mut secondary = user("google-oauth2", "111", "s@example.com");
        secondary.user_metadata = json!({"k": 2, "theme": "dark"}).as_object().cloned();
        secondary.app_metadata = json!({"plan": "pro"}).as_object().cloned().unwrap();
        secondary.logins_count = 7;
        secondary.last_login = Some("t-login".into());
        secondary.created_at = "t-created".into();
        let target = IdentityKey::new("google-oauth2", "111");
        let by_name = LinkProof::Named {
            connection_id: None,
        };
        let plan = plan_link(&primary, &target, &by_name, Some(&secondary), &policy).unwrap();
        let mut linked = plan.primary_after(&primary);
        // A profile change the identity receives while linked (a later social sign-in).
        if let Some(data) = linked.identities[1].profile_data.as_mut() {
            data.insert("name".into(), json!("New Name"));
        }
        let unlinked = plan_unlink(&linked, &target, "t-unlink", policy.unlink).unwrap();
        (secondary, unlinked.new_user, plan)
    }

    #[test]
    fn restoring_unlink_gives_back_the_user_as_it_was_with_later_profile_changes() {
        let policy = LinkingPolicy {
            unlink: UnlinkMode::Restore,
            merge: MergePolicy::None,
            ..LinkingPolicy::default()
        };
        let (before, after, _) = link_then_unlink(policy);
        assert_eq!(after.user_id, before.user_id);
        assert_eq!(after.user_metadata, before.user_metadata);
        assert_eq!(after.app_metadata, before.app_metadata);
        assert_eq!(after.logins_count, 7);
        assert_eq!(after.last_login.as_deref(), Some("t-login"));
        assert_eq!(after.created_at, "t-created");
        assert_eq!(after.updated_at, "t-unlink");
        assert_eq!(after.profile.email, before.profile.email);
        assert_eq!(after.profile.name.as_deref(), Some("New Name"));
    }

    #[test]
    fn auth0_unlink_keeps_nothing_beyond_profile_data() {
        let (_, after, plan) = link_then_unlink(LinkingPolicy::default());
        assert!(
            plan.moved[0].link_state.restore.is_none(),
            "no snapshot kept"
        );
        assert_eq!(after.user_metadata, None);
        assert!(after.app_metadata.is_empty());
        assert_eq!(after.logins_count, 0);
        assert_eq!(after.created_at, "t-unlink");
    }

    #[test]
    fn a_snapshot_from_a_restore_link_is_ignored_by_an_auth0_unlink() {
        let policy = LinkingPolicy {
            unlink: UnlinkMode::Restore,
            merge: MergePolicy::None,
            ..LinkingPolicy::default()
        };
        let (_, _, plan) = link_then_unlink(policy);
        let primary = user("auth0", "aaa", "p@example.com");
        let linked = plan.primary_after(&primary);
        let target = IdentityKey::new("google-oauth2", "111");
        let unlinked = plan_unlink(&linked, &target, "t1", UnlinkMode::Auth0).unwrap();
        assert_eq!(unlinked.new_user.user_metadata, None);
    }

    #[test]
    fn merge_policy_decides_the_primarys_metadata_and_what_is_discarded() {
        let none = LinkingPolicy::default();
        let (_, _, plan) = link_then_unlink(none);
        assert!(
            !plan.metadata_changed,
            "Auth0 leaves the primary's metadata alone"
        );
        assert_eq!(plan.user_metadata, json!({"k": 1}).as_object().cloned());
        assert_eq!(
            Value::Object(plan.discarded.user_metadata),
            json!({"k": 2, "theme": "dark"})
        );
        assert_eq!(
            Value::Object(plan.discarded.app_metadata),
            json!({"plan": "pro"})
        );

        let primary_wins = LinkingPolicy {
            merge: MergePolicy::PrimaryWins,
            ..none
        };
        let (_, _, plan) = link_then_unlink(primary_wins);
        assert!(plan.metadata_changed);
        assert_eq!(
            plan.user_metadata,
            json!({"k": 1, "theme": "dark"}).as_object().cloned()
        );
        assert_eq!(Value::Object(plan.discarded.user_metadata), json!({"k": 2}));
        assert_eq!(Value::Object(plan.app_metadata), json!({"plan": "pro"}));

        let secondary_wins = LinkingPolicy {
            merge: MergePolicy::SecondaryWins,
            ..none
        };
        let (_, _, plan) = link_then_unlink(secondary_wins);
        assert_eq!(
            plan.user_metadata,
            json!({"k": 2, "theme": "dark"}).as_object().cloned()
        );
        assert_eq!(Value::Object(plan.discarded.user_metadata), json!({"k": 1}));
    }
}
