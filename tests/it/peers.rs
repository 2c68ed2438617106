//! Proof that the local peers speak the platforms' wire formats well enough
//! for the real client libraries: slack-morphism's Web API client and Socket
//! Mode listener against the Slack peer, serenity's HTTP client and gateway
//! client against the Discord peer, and each signing helper against
//! `deckhand::verify`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::discord_peer::{
    DISCORD_APPLICATION_ID, DISCORD_BOT_TOKEN, DISCORD_CHANNEL_ID, DISCORD_GUILD_ID,
    DISCORD_PRIVATE_SEED_HEX, DISCORD_PUBLIC_KEY_HEX, DiscordPeer, DiscordReply, sign_interaction,
};
use crate::support::pagerduty_peer::{
    PAGERDUTY_API_TOKEN, PAGERDUTY_FROM_EMAIL, PagerDutyPeer, PagerDutyReply, pagerduty_signature,
    signed_webhook, webhook_with,
};
use crate::support::slack_peer::{
    SLACK_APP_TOKEN, SLACK_BOT_TOKEN, SlackPeer, SlackReply, altered_post, forged_post,
    signed_post, stale_post,
};
use crate::support::{DEADLINE, PeerServer, fixture_bytes, fixture_json, now_unix, wait_for};

// Slack, driven by slack-morphism.

mod slack {
    use slack_morphism::errors::SlackClientError;
    use slack_morphism::prelude::*;

    use super::*;

    const CHANNEL: &str = "C0DEPLOYS1";

    fn connector(peer: &SlackPeer) -> SlackClientHyperHttpsConnector {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let https_or_http = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .expect("the machine has CA roots")
            .https_or_http()
            .enable_http1()
            .build();
        SlackClientHyperConnector::with_connector(https_or_http).with_slack_api_url(&peer.api_url())
    }

    fn token(value: &str) -> SlackApiToken {
        SlackApiToken::new(SlackApiTokenValue::new(value.to_string()))
    }

    fn text_content(text: &str) -> SlackMessageContent {
        SlackMessageContent::new().with_text(text.to_string())
    }

    #[tokio::test]
    async fn web_api_posts_and_updates_come_back_typed() {
        let peer = SlackPeer::start().await;
        let client = SlackClient::new(connector(&peer));
        let bot_token = token(SLACK_BOT_TOKEN);
        let session = client.open_session(&bot_token);
        let channel = SlackChannelId::new(CHANNEL.to_string());

        let identity = session.auth_test().await.expect("auth.test answers");
        assert_eq!(identity.user_id.to_string(), "U0CHATBOT1");

        let posted = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                channel.clone(),
                text_content("Deploy #42 · staging ← develop"),
            ))
            .await
            .expect("chat.postMessage answers ok");
        let second = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                channel.clone(),
                text_content("another"),
            ))
            .await
            .expect("chat.postMessage answers ok");
        assert_ne!(posted.ts, second.ts, "every message gets a fresh ts");
        assert_eq!(posted.message.origin.ts, posted.ts);

        for step in ["pull ✓", "pull ✓ migrate ✓"] {
            let updated = session
                .chat_update(&SlackApiChatUpdateRequest::new(
                    channel.clone(),
                    text_content(step),
                    posted.ts.clone(),
                ))
                .await
                .expect("chat.update answers ok");
            assert_eq!(updated.ts, posted.ts);
        }
        let message = peer
            .message(CHANNEL, posted.ts.as_ref())
            .expect("the peer kept the message");
        assert_eq!(
            message.texts(),
            [
                "Deploy #42 · staging ← develop",
                "pull ✓",
                "pull ✓ migrate ✓"
            ],
            "the edit history is kept in order"
        );

        let update_call = &peer.calls_to("chat.update")[0];
        assert_eq!(
            update_call.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            update_call.header("authorization"),
            Some(format!("Bearer {SLACK_BOT_TOKEN}").as_str())
        );
        assert_eq!(update_call.body["ts"], json!(posted.ts.to_string()));

        session
            .reactions_add(&SlackApiReactionsAddRequest::new(
                channel.clone(),
                SlackReactionName::new("rocket".to_string()),
                posted.ts.clone(),
            ))
            .await
            .expect("reactions.add answers ok");
        let again = session
            .reactions_add(&SlackApiReactionsAddRequest::new(
                channel.clone(),
                SlackReactionName::new("rocket".to_string()),
                posted.ts.clone(),
            ))
            .await;
        assert!(
            matches!(again, Err(SlackClientError::ApiError(ref error)) if error.code == "already_reacted"),
            "{again:?}"
        );
        assert_eq!(
            peer.message(CHANNEL, posted.ts.as_ref())
                .map(|message| message.reactions),
            Some(vec!["rocket".to_string()])
        );

        session
            .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
                channel.clone(),
                SlackUserId::new("U0ALICE001".to_string()),
                text_content("only you can see this"),
            ))
            .await
            .expect("chat.postEphemeral answers ok");
        assert_eq!(peer.ephemerals()[0]["user"], "U0ALICE001");

        peer.set_usergroup("S0DEPLOYERS", &["U0BOB00002", "U0CAROL003"]);
        let members = session
            .usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new(
                SlackUserGroupId::new("S0DEPLOYERS".to_string()),
            ))
            .await
            .expect("usergroups.users.list answers ok");
        assert_eq!(members.users.len(), 2);

        // A person's message can be reacted to but not edited by the bot.
        let alice_ts = peer.seed_message(CHANNEL, "U0ALICE001", "can someone approve?");
        let alice_ts = SlackTs::new(alice_ts);
        session
            .reactions_add(&SlackApiReactionsAddRequest::new(
                channel.clone(),
                SlackReactionName::new("eyes".to_string()),
                alice_ts.clone(),
            ))
            .await
            .expect("reactions.add on a seeded message answers ok");
        let edit = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel.clone(),
                text_content("hijacked"),
                alice_ts,
            ))
            .await;
        assert!(
            matches!(edit, Err(SlackClientError::ApiError(ref error)) if error.code == "cant_update_message"),
            "{edit:?}"
        );
        let reacted = peer
            .wait_for_message(CHANNEL, DEADLINE, |message| message.reactions == ["eyes"])
            .await;
        assert_eq!(reacted.text(), "can someone approve?");
        assert_eq!(
            peer.wait_for_calls("chat.update", 3, DEADLINE).await.len(),
            3
        );
    }

    #[tokio::test]
    async fn scripted_errors_rate_limits_and_bad_tokens_reach_the_client() {
        let peer = SlackPeer::start().await;
        let client = SlackClient::new(connector(&peer));
        let bot_token = token(SLACK_BOT_TOKEN);
        let session = client.open_session(&bot_token);
        let channel = SlackChannelId::new(CHANNEL.to_string());
        let posted = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                channel.clone(),
                text_content("v1"),
            ))
            .await
            .expect("chat.postMessage answers ok");

        peer.script(
            "chat.update",
            2,
            SlackReply::RateLimited {
                retry_after_secs: 1,
            },
        );
        peer.script(
            "chat.update",
            1,
            SlackReply::Error("cant_update_message".to_string()),
        );
        let update =
            SlackApiChatUpdateRequest::new(channel.clone(), text_content("v2"), posted.ts.clone());
        for _ in 0..2 {
            match session.chat_update(&update).await {
                Err(SlackClientError::RateLimitError(error)) => {
                    assert_eq!(error.retry_after, Some(Duration::from_secs(1)));
                    assert_eq!(error.code.as_deref(), Some("ratelimited"));
                }
                other => panic!("expected a rate limit, got {other:?}"),
            }
        }
        match session.chat_update(&update).await {
            Err(SlackClientError::ApiError(error)) => assert_eq!(error.code, "cant_update_message"),
            other => panic!("expected cant_update_message, got {other:?}"),
        }
        session
            .chat_update(&update)
            .await
            .expect("the script is used up");
        let statuses: Vec<u16> = peer
            .calls_to("chat.update")
            .iter()
            .map(|call| call.status)
            .collect();
        assert_eq!(statuses, [429, 429, 200, 200]);
        assert_eq!(
            peer.message(CHANNEL, posted.ts.as_ref())
                .map(|message| message.texts()),
            Some(vec!["v1".to_string(), "v2".to_string()]),
            "scripted replies change nothing"
        );

        let wrong_token = token("xoxb-not-the-bot-token");
        let refused = client.open_session(&wrong_token).auth_test().await;
        assert!(
            matches!(refused, Err(SlackClientError::ApiError(ref error)) if error.code == "invalid_auth"),
            "{refused:?}"
        );
        let app_token = token(SLACK_APP_TOKEN);
        let refused = client.open_session(&app_token).auth_test().await;
        assert!(
            matches!(refused, Err(SlackClientError::ApiError(ref error)) if error.code == "invalid_auth"),
            "{refused:?}"
        );

        peer.script(
            "auth.test",
            1,
            SlackReply::Raw {
                status: 503,
                body: json!({ "ok": false, "error": "service_unavailable" }),
            },
        );
        let unavailable = session.auth_test().await;
        assert!(
            matches!(unavailable, Err(SlackClientError::HttpError(ref error)) if error.status_code.as_u16() == 503),
            "{unavailable:?}"
        );
    }

    #[tokio::test]
    async fn form_bodies_and_response_urls_are_recorded() {
        let peer = SlackPeer::start().await;
        let http = reqwest::Client::new();
        let form = [
            ("token", SLACK_BOT_TOKEN),
            ("channel", CHANNEL),
            ("text", "from a form"),
            (
                "blocks",
                r#"[{"type":"section","text":{"type":"mrkdwn","text":"*hi*"}}]"#,
            ),
        ];
        let answer: Value = http
            .post(format!("{}/chat.postMessage", peer.api_url()))
            .form(&form)
            .send()
            .await
            .expect("the peer answers")
            .json()
            .await
            .expect("the peer answers JSON");
        assert_eq!(answer["ok"], true, "{answer}");
        let ts = answer["ts"].as_str().expect("a ts");
        let message = peer
            .message(CHANNEL, ts)
            .expect("the peer kept the form message");
        assert_eq!(
            message.latest()["blocks"][0]["type"],
            "section",
            "form blocks are parsed JSON"
        );

        let reply = fixture_json("slack/interaction_response_url_replace.json");
        http.post(peer.response_url("cmd-1"))
            .json(&reply)
            .send()
            .await
            .expect("the peer answers");
        assert_eq!(
            peer.wait_for_response_posts("cmd-1", 1, DEADLINE).await,
            [reply]
        );
    }

    #[derive(Clone)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    async fn remember(states: &SlackClientEventsUserState, what: String) {
        let guard = states.read().await;
        let seen = guard
            .get_user_state::<Seen>()
            .expect("the test registered Seen");
        seen.0.lock().expect("not poisoned").push(what);
    }

    async fn on_command(
        event: SlackCommandEvent,
        _client: Arc<SlackHyperClient>,
        states: SlackClientEventsUserState,
    ) -> UserCallbackResult<SlackCommandEventResponse> {
        remember(
            &states,
            format!("{} {}", event.command, event.text.unwrap_or_default()),
        )
        .await;
        Ok(SlackCommandEventResponse::new(
            SlackMessageContent::new().with_text("Deploying…".to_string()),
        ))
    }

    async fn on_push(
        event: SlackPushEventCallback,
        _client: Arc<SlackHyperClient>,
        states: SlackClientEventsUserState,
    ) -> UserCallbackResult<()> {
        let what = match event.event {
            SlackEventCallbackBody::ReactionAdded(reaction) => {
                format!("reaction {}", reaction.reaction)
            }
            other => format!("other event {other:?}"),
        };
        remember(&states, what).await;
        Ok(())
    }

    async fn on_interaction(
        event: SlackInteractionEvent,
        _client: Arc<SlackHyperClient>,
        states: SlackClientEventsUserState,
    ) -> UserCallbackResult<SlackInteractionResponse> {
        let what = match event {
            SlackInteractionEvent::BlockActions(actions) => {
                let action_ids: Vec<String> = actions
                    .actions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|action| action.action_id.to_string())
                    .collect();
                format!("block_actions {}", action_ids.join(","))
            }
            other => format!("other interaction {other:?}"),
        };
        remember(&states, what).await;
        Ok(SlackInteractionResponse::Empty)
    }

    #[tokio::test]
    async fn socket_mode_listener_acks_envelopes_and_reconnects() {
        let peer = SlackPeer::start().await;
        let client = Arc::new(SlackClient::new(connector(&peer)));
        let seen = Seen(Arc::new(Mutex::new(Vec::new())));
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(Arc::clone(&client))
                .with_user_state(seen.clone()),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_push_events(on_push)
            .with_interaction_events(on_interaction);
        let config = SlackClientSocketModeConfig::new().with_max_connections_count(1);
        let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
        listener
            .listen_for(&token(SLACK_APP_TOKEN))
            .await
            .expect("registering the app token");
        listener.start().await;
        peer.wait_for_connections(1, DEADLINE).await;
        assert_eq!(peer.calls_to("apps.connections.open").len(), 1);

        let slash =
            fixture_json("slack/socket_mode_envelope_slash_commands.json")["payload"].clone();
        let envelope_id = peer.push_slash_command(slash);
        let ack = peer.wait_for_ack(&envelope_id, DEADLINE).await;
        assert_eq!(
            ack["payload"]["text"], "Deploying…",
            "the command's answer rides on the ack"
        );

        let event = fixture_json("slack/socket_mode_envelope_events_api.json")["payload"].clone();
        let event_envelope = peer.push_events_api(event);
        assert_eq!(
            peer.wait_for_ack(&event_envelope, DEADLINE).await,
            json!({ "envelope_id": event_envelope })
        );

        let interaction =
            fixture_json("slack/socket_mode_envelope_interactive.json")["payload"].clone();
        let interaction_envelope = peer.push_interactive(interaction);
        peer.wait_for_ack(&interaction_envelope, DEADLINE).await;
        assert_eq!(
            *seen.0.lock().expect("not poisoned"),
            [
                "/deploy staging develop",
                "reaction white_check_mark",
                "block_actions deploy_approve"
            ]
        );

        peer.push_disconnect("refresh_requested");
        peer.wait_for_connections(2, DEADLINE).await;
        let after_refresh = peer.push_slash_command(
            fixture_json("slack/socket_mode_envelope_slash_commands.json")["payload"].clone(),
        );
        peer.wait_for_ack(&after_refresh, DEADLINE).await;

        peer.drop_socket();
        peer.wait_for_connections(3, DEADLINE).await;
        assert_eq!(
            peer.calls_to("apps.connections.open").len(),
            3,
            "each connection uses a fresh ticket"
        );
        listener.shutdown().await;
    }
}

// Discord, driven by serenity.

mod discord {
    use serenity::all::{
        ChannelId, ClientBuilder, Command, CommandType, Context, CreateCommand,
        CreateCommandOption, CreateInteractionResponse, CreateInteractionResponseFollowup,
        CreateInteractionResponseMessage, CreateMessage, EditInteractionResponse, EditMessage,
        EventHandler, GatewayIntents, GuildId, Http, HttpBuilder, Interaction, InteractionId,
        Reaction, ReactionType, Ready, ResumedEvent,
    };

    use super::*;

    fn http_client(peer: &DiscordPeer, token: &str) -> Http {
        HttpBuilder::new(token)
            .proxy(peer.base_url())
            .ratelimiter_disabled(true)
            .application_id(DISCORD_APPLICATION_ID.into())
            .build()
    }

    #[tokio::test]
    async fn rest_calls_from_serenity_reach_the_peer() {
        let peer = DiscordPeer::start().await;
        let http = http_client(&peer, DISCORD_BOT_TOKEN);

        let gateway = http.get_gateway().await.expect("GET /gateway answers");
        assert_eq!(gateway.url, peer.gateway_url());
        let bot = http
            .get_current_user()
            .await
            .expect("GET /users/@me answers");
        assert_eq!(bot.id.get(), DISCORD_APPLICATION_ID);
        let application = http
            .get_current_application_info()
            .await
            .expect("GET /oauth2/applications/@me answers");
        assert_eq!(application.verify_key, DISCORD_PUBLIC_KEY_HEX);

        let deploy = CreateCommand::new("deploy")
            .description("Deploy a ref to an environment")
            .add_option(
                CreateCommandOption::new(
                    serenity::all::CommandOptionType::String,
                    "environment",
                    "where",
                )
                .required(true),
            );
        let registered: Vec<Command> = Command::set_global_commands(&http, vec![deploy.clone()])
            .await
            .expect("PUT global commands answers");
        assert_eq!(registered[0].name, "deploy");
        assert_eq!(registered[0].kind, CommandType::ChatInput);
        let again: Vec<Command> = Command::set_global_commands(&http, vec![deploy.clone()])
            .await
            .expect("PUT global commands answers");
        assert_eq!(again[0].id, registered[0].id, "re-registering keeps the id");
        let guild_commands = GuildId::new(DISCORD_GUILD_ID)
            .set_commands(&http, vec![deploy])
            .await
            .expect("PUT guild commands answers");
        assert_eq!(
            peer.guild_commands(DISCORD_GUILD_ID)[0]["id"],
            json!(guild_commands[0].id.to_string())
        );
        assert_eq!(
            peer.global_commands()[0]["options"][0]["name"],
            "environment"
        );

        let channel = ChannelId::new(DISCORD_CHANNEL_ID);
        let approval = channel
            .send_message(&http, CreateMessage::new().content("Approve rollback?"))
            .await
            .expect("POST message answers");
        channel
            .create_reaction(&http, approval.id, ReactionType::Unicode("✅".to_string()))
            .await
            .expect("PUT reaction answers 204");
        let put = &peer.requests_matching("PUT", "/reactions/")[0];
        assert!(put.path.ends_with("/reactions/✅/@me"), "{}", put.path);
        assert_eq!(
            peer.message(&approval.id.to_string())
                .map(|message| message.reactions),
            Some(vec!["✅".to_string()])
        );
        channel
            .delete_reaction(
                &http,
                approval.id,
                None,
                ReactionType::Unicode("✅".to_string()),
            )
            .await
            .expect("DELETE reaction answers 204");
        assert_eq!(
            peer.message(&approval.id.to_string())
                .map(|message| message.reactions),
            Some(Vec::new())
        );

        let interaction = fixture_json("discord/interaction_command_deploy.json");
        let interaction_id: InteractionId = interaction["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("an id");
        let token = interaction["token"].as_str().expect("a token");
        http.create_interaction_response(
            interaction_id,
            token,
            &CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
            vec![],
        )
        .await
        .expect("the callback answers 204");
        for step in ["pull ✓", "pull ✓ recreate ✓"] {
            http.edit_original_interaction_response(
                token,
                &EditInteractionResponse::new().content(step),
                vec![],
            )
            .await
            .expect("PATCH @original answers");
        }
        let original = peer.wait_for_original(token, 3, DEADLINE).await;
        assert_eq!(original.contents(), ["", "pull ✓", "pull ✓ recreate ✓"]);
        let repeat = http
            .create_interaction_response(
                interaction_id,
                token,
                &CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
                vec![],
            )
            .await;
        assert!(
            format!("{repeat:?}").contains("40060"),
            "an interaction is acknowledged once: {repeat:?}"
        );
        http.create_followup_message(
            token,
            &CreateInteractionResponseFollowup::new().content("done ✅"),
            vec![],
        )
        .await
        .expect("POST follow-up answers");
        assert_eq!(peer.followups(token)[0].content(), "done ✅");
        assert_eq!(peer.interaction_callbacks()[0].body["type"], 5);

        peer.script(
            "PATCH",
            "/channels/",
            1,
            DiscordReply::Error {
                status: 403,
                code: 50001,
                message: "Missing Access".to_string(),
            },
        );
        let denied = channel
            .edit_message(
                &http,
                approval.id,
                EditMessage::new().content("Approved ✅"),
            )
            .await;
        assert!(format!("{denied:?}").contains("50001"), "{denied:?}");
        channel
            .edit_message(
                &http,
                approval.id,
                EditMessage::new().content("Approved ✅"),
            )
            .await
            .expect("PATCH message answers once the script is used up");
        let edits = peer
            .wait_for_requests("PATCH", "/channels/", 2, DEADLINE)
            .await;
        assert_eq!(
            edits.iter().map(|edit| edit.status).collect::<Vec<_>>(),
            [403, 200]
        );
        assert_eq!(
            peer.message(&approval.id.to_string())
                .map(|message| message.contents()),
            Some(vec![
                "Approve rollback?".to_string(),
                "Approved ✅".to_string()
            ])
        );
        let question = peer.seed_message(DISCORD_CHANNEL_ID, "who approves?");
        channel
            .create_reaction(&http, question.parse::<u64>().expect("a snowflake"), '👀')
            .await
            .expect("PUT reaction on a seeded message answers 204");

        peer.script(
            "PATCH",
            "/messages/@original",
            1,
            DiscordReply::RateLimited {
                retry_after_secs: 1.5,
                global: false,
            },
        );
        let limited = http
            .edit_original_interaction_response(
                token,
                &EditInteractionResponse::new().content("x"),
                vec![],
            )
            .await;
        assert!(format!("{limited:?}").contains("429"), "{limited:?}");
        let scripted = &peer.requests_matching("PATCH", "/messages/@original")[2];
        assert_eq!(scripted.status, 429);

        let stranger = http_client(&peer, "not-the-token");
        let refused = stranger.get_current_user().await;
        assert!(format!("{refused:?}").contains("401"), "{refused:?}");
    }

    #[derive(Clone)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Recorder {
        fn push(&self, what: String) {
            self.0.lock().expect("not poisoned").push(what);
        }

        fn seen(&self) -> Vec<String> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    #[serenity::async_trait]
    impl EventHandler for Recorder {
        async fn ready(&self, _context: Context, ready: Ready) {
            self.push(format!("ready {}", ready.user.name));
        }

        async fn resume(&self, _context: Context, _resumed: ResumedEvent) {
            self.push("resumed".to_string());
        }

        async fn interaction_create(&self, context: Context, interaction: Interaction) {
            if let Interaction::Command(command) = interaction {
                self.push(format!("command {}", command.data.name));
                let deferred = command.defer(&context.http).await;
                self.push(format!("deferred {}", deferred.is_ok()));
            }
        }

        async fn reaction_add(&self, _context: Context, reaction: Reaction) {
            self.push(format!("reaction {}", reaction.emoji));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serenity_gateway_identifies_receives_dispatches_and_resumes() {
        let peer = DiscordPeer::start().await;
        let recorder = Recorder(Arc::new(Mutex::new(Vec::new())));
        let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS;
        let mut client =
            ClientBuilder::new_with_http(http_client(&peer, DISCORD_BOT_TOKEN), intents)
                .event_handler(recorder.clone())
                .await
                .expect("the client builds");
        let running = tokio::spawn(async move { client.start().await });

        let identify = peer.wait_for_identify(1, DEADLINE).await;
        assert_eq!(
            identify["intents"],
            json!(intents.bits()),
            "IDENTIFY carries the intents"
        );
        peer.wait_for_session(DEADLINE).await;
        wait_for("the ready handler", DEADLINE, || {
            recorder
                .seen()
                .contains(&"ready chatops-bot".to_string())
                .then_some(())
        })
        .await;

        let seq = peer.dispatch_fixture("discord/gateway_interaction_create.json");
        assert_eq!(seq, 2, "READY was 1");
        wait_for("the deferred interaction", DEADLINE, || {
            recorder
                .seen()
                .contains(&"deferred true".to_string())
                .then_some(())
        })
        .await;
        assert!(recorder.seen().contains(&"command deploy".to_string()));
        assert_eq!(peer.interaction_callbacks()[0].body["type"], 5);

        // Heartbeats are answered with op 11 (or serenity would reconnect) and
        // carry the last sequence number seen.
        wait_for("a heartbeat carrying s=2", DEADLINE, || {
            peer.heartbeats().contains(&json!(2)).then_some(())
        })
        .await;
        assert_eq!(
            peer.connection_count(),
            1,
            "acknowledged heartbeats keep the connection"
        );

        let reaction = fixture_json("discord/gateway_message_reaction_add.json")["d"].clone();
        peer.dispatch_lost("MESSAGE_REACTION_ADD", reaction);
        peer.send_reconnect();
        let resume = peer.wait_for_resume(1, DEADLINE).await;
        assert_eq!(
            resume["seq"], 2,
            "the client resumes from the last s it saw"
        );
        wait_for("the replayed reaction", DEADLINE, || {
            recorder
                .seen()
                .contains(&"reaction ✅".to_string())
                .then_some(())
        })
        .await;
        wait_for("the resume handler", DEADLINE, || {
            recorder
                .seen()
                .contains(&"resumed".to_string())
                .then_some(())
        })
        .await;
        assert_eq!(peer.connection_count(), 2);

        peer.drop_socket();
        peer.wait_for_resume(2, DEADLINE).await;
        assert_eq!(peer.connection_count(), 3);
        running.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serenity_gateway_reidentifies_after_invalid_session_and_missing_acks() {
        let peer = DiscordPeer::start().await;
        let recorder = Recorder(Arc::new(Mutex::new(Vec::new())));
        let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS;
        let mut client =
            ClientBuilder::new_with_http(http_client(&peer, DISCORD_BOT_TOKEN), intents)
                .event_handler(recorder.clone())
                .await
                .expect("the client builds");
        let running = tokio::spawn(async move { client.start().await });
        peer.wait_for_session(DEADLINE).await;

        peer.close_socket(4000, "Unknown error");
        let resume = peer.wait_for_resume(1, DEADLINE).await;
        assert_eq!(resume["seq"], 1, "a 4000 close is resumable");

        // Serenity waits up to 5 s between identifies (WAIT_BETWEEN_BOOTS_IN_SECONDS).
        peer.send_invalid_session(false);
        peer.wait_for_identify(2, DEADLINE).await;
        peer.wait_for_session(DEADLINE).await;
        peer.dispatch_fixture("discord/gateway_message_reaction_add_custom_emoji.json");
        wait_for("the reaction on the new session", DEADLINE, || {
            recorder
                .seen()
                .iter()
                .any(|seen| seen.starts_with("reaction <:shipit:"))
                .then_some(())
        })
        .await;

        peer.set_heartbeat_acks(false);
        peer.wait_for_identify(3, DEADLINE).await;
        wait_for("READY after each of the three identifies", DEADLINE, || {
            let n_ready = recorder
                .seen()
                .iter()
                .filter(|seen| seen.starts_with("ready"))
                .count();
            (n_ready == 3).then_some(())
        })
        .await;
        running.abort();
    }
}

// Signing helpers against deckhand::verify, and the PagerDuty peer.

mod signing {
    use deckhand::verify::{verify_discord, verify_pagerduty, verify_slack};

    use super::*;

    const SLACK_SECRET: &str = "222f5e479aa3a4084d9fe469b073d170";
    const PAGERDUTY_SECRET: &str =
        "QX8gHe6dXg/OyogVYI3baUquHrZ7J3NJ1hrj+sWodUsYQpfpTWa924335YsrmErM";

    /// A stand-in for Deckhand's webhook routes: 200 when verified, else 401
    /// with the verifier's message.
    async fn verifier() -> PeerServer {
        async fn check(platform: &str, headers: &HeaderMap, body: &Bytes) -> (StatusCode, String) {
            let pairs: Vec<(String, Vec<u8>)> = headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect();
            let outcome = match platform {
                "slack" => {
                    verify_slack(pairs.as_slice(), body, SLACK_SECRET.as_bytes(), now_unix())
                        .map(|_| ())
                }
                "discord" => {
                    verify_discord(pairs.as_slice(), body, DISCORD_PUBLIC_KEY_HEX).map(|_| ())
                }
                _ => verify_pagerduty(pairs.as_slice(), body, PAGERDUTY_SECRET.as_bytes())
                    .map(|_| ()),
            };
            match outcome {
                Ok(()) => (StatusCode::OK, "verified".to_string()),
                Err(error) => (StatusCode::UNAUTHORIZED, error.to_string()),
            }
        }
        let router = Router::new()
            .route(
                "/slack",
                post(|headers: HeaderMap, body: Bytes| async move {
                    check("slack", &headers, &body).await
                }),
            )
            .route(
                "/discord",
                post(|headers: HeaderMap, body: Bytes| async move {
                    check("discord", &headers, &body).await
                }),
            )
            .route(
                "/pagerduty",
                post(|headers: HeaderMap, body: Bytes| async move {
                    check("pagerduty", &headers, &body).await
                }),
            );
        PeerServer::start(router).await
    }

    async fn outcome(response: reqwest::Response) -> (u16, String) {
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    #[tokio::test]
    async fn slack_signed_posts_pass_and_their_variants_fail() {
        let server = verifier().await;
        let url = format!("{}/slack", server.http_url());
        let body = fixture_bytes("slack/slash_command_deploy.form");
        let form = "application/x-www-form-urlencoded";

        assert_eq!(
            outcome(signed_post(&url, SLACK_SECRET, &body, form, now_unix()).await).await,
            (200, "verified".to_string())
        );
        let (status, message) = outcome(stale_post(&url, SLACK_SECRET, &body, form).await).await;
        assert_eq!(
            (status, message.starts_with("stale timestamp: 600 s")),
            (401, true),
            "{message}"
        );
        let (status, message) = outcome(forged_post(&url, &body, form, now_unix()).await).await;
        assert_eq!(
            (status, message.as_str()),
            (401, "bad signature in \"X-Slack-Signature\"")
        );
        let altered = String::from_utf8(body.clone())
            .expect("UTF-8 form")
            .replace("staging", "production");
        let (status, message) =
            outcome(altered_post(&url, SLACK_SECRET, &body, altered.as_bytes(), form).await).await;
        assert_eq!(
            (status, message.as_str()),
            (401, "bad signature in \"X-Slack-Signature\"")
        );
    }

    #[tokio::test]
    async fn discord_interactions_signed_with_the_test_key_verify() {
        let server = verifier().await;
        let url = format!("{}/discord", server.http_url());
        let body = serde_json::to_vec(&fixture_json("discord/interaction_ping.json"))
            .expect("JSON serializes");
        let timestamp = now_unix().to_string();
        let signature = sign_interaction(DISCORD_PRIVATE_SEED_HEX, &timestamp, &body);
        let send = |signature: String, timestamp: String| {
            reqwest::Client::new()
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Signature-Ed25519", signature)
                .header("X-Signature-Timestamp", timestamp)
                .body(body.clone())
                .send()
        };
        let good = send(signature.clone(), timestamp.clone())
            .await
            .expect("the verifier answers");
        assert_eq!(outcome(good).await, (200, "verified".to_string()));
        let shifted = send(signature, (now_unix() + 1).to_string())
            .await
            .expect("the verifier answers");
        assert_eq!(
            outcome(shifted).await,
            (401, "bad signature in \"X-Signature-Ed25519\"".to_string())
        );

        let vectors = fixture_json("signatures.json");
        let keypair = &vectors["discord"]["test_keypair"];
        assert_eq!(keypair["public_key_hex"], DISCORD_PUBLIC_KEY_HEX);
        assert_eq!(keypair["private_key_seed_hex"], DISCORD_PRIVATE_SEED_HEX);
        let ping = &vectors["discord"]["computed_vectors"][0];
        let ping_timestamp = ping["timestamp"].as_str().expect("a timestamp");
        let ping_body = ping["body"].as_str().expect("a body").as_bytes();
        assert_eq!(
            sign_interaction(DISCORD_PRIVATE_SEED_HEX, ping_timestamp, ping_body),
            ping["signature_hex"],
            "Ed25519 is deterministic"
        );
    }

    #[tokio::test]
    async fn pagerduty_webhooks_verify_and_notes_are_checked_like_the_rest_api() {
        let server = verifier().await;
        let url = format!("{}/pagerduty", server.http_url());
        let body = serde_json::to_vec(&fixture_json("pagerduty/incident_triggered.json"))
            .expect("JSON serializes");
        let (response, webhook_id) = signed_webhook(&url, PAGERDUTY_SECRET, &body).await;
        assert_eq!(outcome(response).await, (200, "verified".to_string()));
        assert_eq!(webhook_id.len(), 32);
        let rotated = format!(
            "v1={}, {}",
            "0".repeat(64),
            pagerduty_signature(PAGERDUTY_SECRET, &body)
        );
        assert_eq!(
            outcome(webhook_with(&url, &body, &rotated, &webhook_id).await)
                .await
                .0,
            200
        );
        let forged = pagerduty_signature("another-secret", &body);
        assert_eq!(
            outcome(webhook_with(&url, &body, &forged, &webhook_id).await)
                .await
                .0,
            401
        );

        let peer = PagerDutyPeer::start().await;
        let notes_url = format!("{}/incidents/Q1CHATOPS01AB/notes", peer.base_url());
        let note = json!({ "note": { "content": "Diagnostics: backend restarting (exit 137)" } });
        let post_note = |authorization: String, from: Option<&'static str>| {
            let mut request = reqwest::Client::new()
                .post(&notes_url)
                .header("Authorization", authorization)
                .header("Accept", "application/vnd.pagerduty+json;version=2")
                .json(&note);
            if let Some(from) = from {
                request = request.header("From", from);
            }
            request.send()
        };
        let token = format!("Token token={PAGERDUTY_API_TOKEN}");
        let created = post_note(token.clone(), Some(PAGERDUTY_FROM_EMAIL))
            .await
            .expect("the peer answers");
        assert_eq!(created.status().as_u16(), 201);
        let created: Value = created.json().await.expect("JSON");
        assert_eq!(created["note"]["content"], note["note"]["content"]);
        assert_eq!(
            peer.wait_for_notes("Q1CHATOPS01AB", 1, DEADLINE).await[0].from,
            PAGERDUTY_FROM_EMAIL
        );

        let without_from = post_note(token.clone(), None)
            .await
            .expect("the peer answers");
        assert_eq!(without_from.status().as_u16(), 400);
        let wrong_token = post_note("Token token=nope".to_string(), Some(PAGERDUTY_FROM_EMAIL))
            .await
            .expect("the peer answers");
        assert_eq!(wrong_token.status().as_u16(), 401);
        peer.script(1, PagerDutyReply::RateLimited);
        let limited = post_note(token, Some(PAGERDUTY_FROM_EMAIL))
            .await
            .expect("the peer answers");
        assert_eq!(limited.status().as_u16(), 429);
        assert_eq!(
            peer.notes("Q1CHATOPS01AB").len(),
            1,
            "refused and scripted requests store nothing"
        );
        let statuses: Vec<u16> = peer
            .requests()
            .iter()
            .map(|request| request.status)
            .collect();
        assert_eq!(statuses, [201, 400, 401, 429]);

        let outage = json!({ "error": { "message": "Internal Server Error", "code": 1001 } });
        peer.script(
            1,
            PagerDutyReply::Raw {
                status: 500,
                body: outage.clone(),
            },
        );
        let failed = post_note(
            format!("Token token={PAGERDUTY_API_TOKEN}"),
            Some(PAGERDUTY_FROM_EMAIL),
        )
        .await
        .expect("the peer answers");
        assert_eq!(failed.status().as_u16(), 500);
        assert_eq!(failed.json::<Value>().await.expect("JSON"), outage);
    }
}
