//! What each chat request does once its session is logged in: friends, presence, messages
//! and history, each answered with a reply or a typed refusal.

use super::*;

impl ChatService {
    /// Queues `event` for every session of `user`, here and on the other nodes.
    pub(super) fn tell(&self, user: &str, event: &ChatEvent) {
        self.hub.tell(user, event);
        if let Some(bus) = &self.bus {
            bus.publish(user, event);
        }
    }

    /// Whether `user` has a session here or on another node.
    pub(super) async fn is_online(&self, user: &str) -> bool {
        if self.hub.is_online(user) {
            return true;
        }
        match &self.bus {
            Some(bus) => bus.online_elsewhere(user).await,
            None => false,
        }
    }

    /// `user`'s first session here began: whether they had none on any node either.
    pub(super) async fn first_anywhere(&self, user: &str) -> bool {
        match &self.bus {
            Some(bus) => bus.joined(user).await,
            None => true,
        }
    }

    /// `user`'s last session here ended: whether they have none on any node either.
    pub(super) async fn gone_everywhere(&self, user: &str) -> bool {
        match &self.bus {
            Some(bus) => bus.left(user).await,
            None => true,
        }
    }

    /// Tells `user`'s friends that they came online or went offline.
    pub(super) async fn tell_friends(&self, user: &str, online: bool) {
        let Ok(friends) = self.store.friends(user).await else {
            return;
        };
        let event = ChatEvent::Presence {
            name: user.to_owned(),
            online,
        };
        for (friend, state, _) in friends {
            if state == FriendState::Friends {
                self.tell(&friend, &event);
            }
        }
    }

    /// One request; its reply.
    pub(super) async fn apply(
        &self,
        user: &Username,
        request: ChatRequest,
        budget: &mut Budget,
    ) -> ChatReply {
        answer(self.try_apply(user, request, budget).await)
    }

    /// A message to store: checked, and queued in the store at once (so messages sent one
    /// after another keep their order however many are in flight); the future is the reply,
    /// once the message is stored durably. The sender's other sessions (`session` sent
    /// it) are shown it too.
    pub(super) fn send_message(
        &self,
        me: &str,
        to: &str,
        text: &str,
        nonce: u64,
        session: Option<u64>,
    ) -> impl Future<Output = std::result::Result<ChatReply, Refusal>> + Send + use<'_> {
        let queued = other_user(me, to).and_then(|other| {
            if text.is_empty() || text.len() > MAX_TEXT_BYTES {
                return Err(Refusal(
                    ChatErrorCode::Invalid,
                    format!("a message has 1 to {MAX_TEXT_BYTES} bytes"),
                ));
            }
            let at = chrono::Utc::now().timestamp_millis();
            let limits = Waiting {
                total: self.settings.max_waiting,
                per_sender: self.settings.max_waiting_per_sender,
            };
            let stored = self
                .store
                .store_message(me, &other, text, nonce, at, limits);
            Ok((other, stored))
        });
        let (me, text) = (me.to_owned(), text.to_owned());
        async move {
            let (other, stored) = queued?;
            match stored.await.map_err(internal)? {
                Stored::Message { id, at } => {
                    if !self.pushes {
                        self.hub.wake(&other);
                    }
                    let carbon = ChatEvent::Sent(crate::chat::ChatMessage {
                        id,
                        from: me.clone(),
                        to: other.clone(),
                        at,
                        text,
                    });
                    self.hub.tell_except(&me, session, &carbon);
                    if let Some(bus) = &self.bus {
                        bus.publish(&me, &carbon);
                    }
                    Ok(ChatReply::Stored { id, at })
                }
                Stored::NotFriends => Err(not_friends(&other)),
                Stored::InboxFull => Err(Refusal(
                    ChatErrorCode::InboxFull,
                    format!(
                        "{other} has {} messages waiting; nothing was stored, try later",
                        self.settings.max_waiting
                    ),
                )),
                Stored::SenderFull => Err(Refusal(
                    ChatErrorCode::InboxFull,
                    format!(
                        "{other} has {} messages from you waiting; nothing was stored, try \
                         once they have read some",
                        self.settings.max_waiting_per_sender
                    ),
                )),
            }
        }
    }

    pub(super) async fn try_apply(
        &self,
        user: &Username,
        request: ChatRequest,
        budget: &mut Budget,
    ) -> std::result::Result<ChatReply, Refusal> {
        let me = user.as_str();
        self.admit(me, &request, budget)?;
        match request {
            ChatRequest::Add { name } => {
                let other = other_user(me, &name)?;
                if self.store.blocks(me, &other).await.map_err(internal)? {
                    return Err(Refusal(
                        ChatErrorCode::Invalid,
                        format!("you block {other}; unblock them first"),
                    ));
                }
                // Dropped silently, answered as any request is: they cannot tell.
                if self.store.blocks(&other, me).await.map_err(internal)? {
                    return Ok(ChatReply::Done);
                }
                let added = self
                    .store
                    .add(me, &other, self.settings.max_asked)
                    .await
                    .map_err(internal)?;
                match added {
                    Added::TooManyRequests => {
                        return Err(Refusal(
                            ChatErrorCode::TooManyRequests,
                            format!(
                                "{} friend requests are waiting for an answer; withdraw some with del",
                                self.settings.max_asked
                            ),
                        ));
                    }
                    // The same answer whether `other` exists or not; only a real user who
                    // is online hears of it now, and not again for a while.
                    Added::Asked => {
                        if self.announced.request(me, &other, Instant::now()) {
                            self.tell(
                                &other,
                                &ChatEvent::FriendRequest {
                                    from: me.to_owned(),
                                },
                            );
                        }
                    }
                    Added::Friends => {
                        self.announced.forget(me, &other);
                        let now = |name: &str| ChatEvent::Friendship {
                            name: name.to_owned(),
                            state: Some(FriendState::Friends),
                        };
                        self.tell(&other, &now(me));
                        self.tell(me, &now(&other));
                        if self.is_online(&other).await {
                            self.tell(
                                me,
                                &ChatEvent::Presence {
                                    name: other.clone(),
                                    online: true,
                                },
                            );
                            self.tell(
                                &other,
                                &ChatEvent::Presence {
                                    name: me.to_owned(),
                                    online: true,
                                },
                            );
                        }
                    }
                }
                Ok(ChatReply::Done)
            }
            ChatRequest::Del { name } => {
                let other = other_user(me, &name)?;
                if self.store.remove(me, &other).await.map_err(internal)? {
                    let gone = |name: &str| ChatEvent::Friendship {
                        name: name.to_owned(),
                        state: None,
                    };
                    if self.announced.ended(me, &other, Instant::now()) {
                        self.tell(&other, &gone(me));
                    }
                    self.tell(me, &gone(&other));
                }
                Ok(ChatReply::Done)
            }
            ChatRequest::Block { name } => {
                let other = other_user(me, &name)?;
                let max = self.settings.max_blocked;
                if !self
                    .store
                    .set_blocked(me, &other, true, max)
                    .await
                    .map_err(internal)?
                {
                    return Err(Refusal(
                        ChatErrorCode::Invalid,
                        format!("you block {max} names already; unblock some first"),
                    ));
                }
                // What there was between them ended; only the one who blocked is told.
                self.tell(
                    me,
                    &ChatEvent::Friendship {
                        name: other,
                        state: None,
                    },
                );
                Ok(ChatReply::Done)
            }
            ChatRequest::Unblock { name } => {
                let other = other_user(me, &name)?;
                self.store
                    .set_blocked(me, &other, false, self.settings.max_blocked)
                    .await
                    .map_err(internal)?;
                // Their next request is told, however recent the last.
                self.announced.forget(me, &other);
                Ok(ChatReply::Done)
            }
            ChatRequest::Blocked => {
                let names = self.store.blocked(me).await.map_err(internal)?;
                Ok(ChatReply::Blocked { names })
            }
            ChatRequest::Friends => {
                let mut friends = Vec::new();
                for (name, state, color) in self.store.friends(me).await.map_err(internal)? {
                    friends.push(Friend {
                        online: state == FriendState::Friends && self.is_online(&name).await,
                        name,
                        state,
                        color,
                    });
                }
                Ok(ChatReply::Friends { friends })
            }
            ChatRequest::Send { to, text, nonce } => {
                self.send_message(me, &to, &text, nonce, None).await
            }
            ChatRequest::Ack { up_to } => {
                self.store
                    .ack(me, up_to, self.settings.history)
                    .await
                    .map_err(internal)?;
                Ok(ChatReply::Done)
            }
            ChatRequest::History { with, limit } => {
                let other = other_user(me, &with)?;
                let mut messages = self
                    .store
                    .history(me, &other, limit.min(MAX_HISTORY))
                    .await
                    .map_err(internal)?;
                newest_that_fit(&mut messages, HISTORY_REPLY_BYTES);
                Ok(ChatReply::History { messages })
            }
            ChatRequest::Color { color } => {
                if let Some(color) = &color
                    && !COLOURS.contains(&color.as_str())
                {
                    return Err(Refusal(
                        ChatErrorCode::Invalid,
                        format!(
                            "\"{}\" is not a colour: {}",
                            crate::sanitize::for_log(color),
                            COLOURS.join(", ")
                        ),
                    ));
                }
                self.store
                    .set_color(me, color.as_deref())
                    .await
                    .map_err(internal)?;
                // Friends connected now see it at once, not at their next login.
                let event = ChatEvent::Color {
                    name: me.to_owned(),
                    color,
                };
                for (friend, state, _) in self.store.friends(me).await.map_err(internal)? {
                    if state == FriendState::Friends {
                        self.tell(&friend, &event);
                    }
                }
                Ok(ChatReply::Done)
            }
            ChatRequest::OwnColor => {
                let color = self.store.color(me).await.map_err(internal)?;
                Ok(ChatReply::Color { color })
            }
        }
    }

    /// Refuses a request past the rate limits.
    pub(super) fn admit(
        &self,
        me: &str,
        request: &ChatRequest,
        budget: &mut Budget,
    ) -> std::result::Result<(), Refusal> {
        let changes = !matches!(
            request,
            ChatRequest::Friends
                | ChatRequest::Ack { .. }
                | ChatRequest::History { .. }
                | ChatRequest::Blocked
                | ChatRequest::OwnColor
        );
        if changes {
            let now = Instant::now();
            // Per connection, then per user (all their connections together).
            let (rate, burst) = (self.settings.rate, self.settings.burst);
            if !budget.take(now) || !self.hub.take(me, now, rate * 2.0, burst * 2.0) {
                return Err(Refusal(
                    ChatErrorCode::RateLimited,
                    format!(
                        "slow down: at most {rate} messages and friend changes a second \
                         ({} for all your connections together)",
                        rate * 2.0
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Bytes of messages one `History` reply carries at most, well inside a frame: 1,000
/// messages of 4 KiB would not fit one.
pub(super) const HISTORY_REPLY_BYTES: usize = 512 * 1024;

/// Drops the oldest of `messages` (oldest first) until the rest take at most `budget`
/// bytes on the wire.
pub(super) fn newest_that_fit(messages: &mut Vec<crate::chat::ChatMessage>, budget: usize) {
    // Each message: its strings with their 8-byte lengths, and three 8-byte numbers.
    let size = |m: &crate::chat::ChatMessage| m.text.len() + m.from.len() + m.to.len() + 48;
    let mut total = 0usize;
    let kept = messages
        .iter()
        .rev()
        .take_while(|m| {
            total = total.saturating_add(size(m));
            total <= budget
        })
        .count();
    messages.drain(..messages.len() - kept);
}

/// A refused request: its code and words.
pub(super) struct Refusal(pub(super) ChatErrorCode, pub(super) String);

/// The reply to a request that was done or refused.
pub(super) fn answer(result: std::result::Result<ChatReply, Refusal>) -> ChatReply {
    match result {
        Ok(reply) => reply,
        Err(Refusal(code, message)) => ChatReply::Error { code, message },
    }
}

pub(super) fn internal(err: store::StoreError) -> Refusal {
    tracing::error!(error = %err, "chat store failed");
    Refusal(
        ChatErrorCode::Internal,
        "the server's chat store failed".into(),
    )
}

pub(super) fn not_friends(other: &str) -> Refusal {
    Refusal(
        ChatErrorCode::NotFriends,
        format!("you and {other} are not friends: add them, and they you"),
    )
}

/// `name` as another user's name.
pub(super) fn other_user(me: &str, name: &str) -> std::result::Result<String, Refusal> {
    let parsed = Username::parse(name).map_err(|_| {
        Refusal(
            ChatErrorCode::Invalid,
            format!("\"{}\" is not a user name", crate::sanitize::for_log(name)),
        )
    })?;
    if parsed.as_str() == me {
        return Err(Refusal(ChatErrorCode::Invalid, "that is you".into()));
    }
    Ok(parsed.as_str().to_owned())
}
