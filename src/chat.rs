//! The chat's vocabulary on the wire: what a client asks (on the connection's first
//! bidirectional QUIC stream, after the same hello and login as the file protocol), what the
//! server answers there, and the events it pushes on a unidirectional stream of its own.
//! Data only; frames are the file protocol's (`wire`, which makes these its messages).
//!
//! Variants are only ever appended, never reordered: bincode encodes a variant by its index.

use serde::{Deserialize, Serialize};

/// The ALPN protocol name of the chat over QUIC.
pub const CHAT_ALPN: &[u8] = b"ftprep-chat/1";

/// Most bytes of UTF-8 in one message.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Most messages one `History` reply carries.
pub const MAX_HISTORY: u32 = 1000;

/// What a logged-in chat client asks, one frame each; each gets one [`ChatReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatRequest {
    /// Ask `name` to be friends, or accept their request.
    Add {
        /// Who.
        name: String,
    },
    /// End a friendship (both ways), withdraw a request, or decline one.
    Del {
        /// Who.
        name: String,
    },
    /// Friends and requests, with presence.
    Friends,
    /// A message to a friend. `nonce` is the client's random id for it: a resend after a
    /// lost reply is recognised and stored once.
    Send {
        /// The friend.
        to: String,
        /// UTF-8, at most [`MAX_TEXT_BYTES`].
        text: String,
        /// Random, per message.
        nonce: u64,
    },
    /// Every message delivered to us with an id up to this one has been taken in: the
    /// server will not deliver them again.
    Ack {
        /// The highest id taken in.
        up_to: u64,
    },
    /// The most recent messages between us and `with`, oldest first.
    History {
        /// The friend (or former friend).
        with: String,
        /// How many, at most [`MAX_HISTORY`].
        limit: u32,
    },
    /// The colour our name is shown in to friends (`None`: the one derived from the name).
    Color {
        /// A colour name (see `client::chat::COLOURS`).
        color: Option<String>,
    },
    /// Block `name`: what there is between us ends (they are not told), and their friend
    /// requests are dropped silently from now on.
    Block {
        /// Who.
        name: String,
    },
    /// Stop blocking `name`.
    Unblock {
        /// Who.
        name: String,
    },
    /// The names we block.
    Blocked,
    /// The colour we chose for our name (answered with [`ChatReply::Color`]).
    OwnColor,
}

/// Where a friendship stands, seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FriendState {
    /// Both asked: friends.
    Friends,
    /// We asked, they have not answered.
    Asked,
    /// They asked us.
    AskedBy,
}

/// One line of the friends list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// Their name.
    pub name: String,
    /// Where it stands.
    pub state: FriendState,
    /// Online now (only ever true for friends).
    pub online: bool,
    /// The colour they chose, if any (only for friends).
    pub color: Option<String>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its id: increasing, so a recipient's messages arrive in id order.
    pub id: u64,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// When the server stored it, milliseconds since the Unix epoch.
    pub at: i64,
    /// The text as sent (a peer's: neutralise before showing it).
    pub text: String,
}

/// Why a chat request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatErrorCode {
    /// Not a user name, a message too long or empty, a bad colour.
    Invalid,
    /// Messages and presence are for friends only.
    NotFriends,
    /// The recipient has too many messages waiting; nothing was stored.
    InboxFull,
    /// Too many friend requests waiting for an answer.
    TooManyRequests,
    /// Too many requests too fast: slow down.
    RateLimited,
    /// The server failed; the message says how.
    Internal,
    /// A request that is not valid here.
    UnexpectedRequest,
}

/// The answer to one [`ChatRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatReply {
    /// Done.
    Done,
    /// The friends list.
    Friends {
        /// Friends and requests.
        friends: Vec<Friend>,
    },
    /// The message is stored durably (or was already, for a resend).
    Stored {
        /// Its id.
        id: u64,
        /// When it was stored.
        at: i64,
    },
    /// A conversation's recent messages, oldest first.
    History {
        /// The messages.
        messages: Vec<ChatMessage>,
    },
    /// Refused.
    Error {
        /// Why, typed.
        code: ChatErrorCode,
        /// Why, in words.
        message: String,
    },
    /// The names we block, sorted.
    Blocked {
        /// The names.
        names: Vec<String>,
    },
    /// The colour we chose (`None`: none, our name shows in the one derived from it).
    Color {
        /// A colour name, or none.
        color: Option<String>,
    },
}

/// What the server pushes on its event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEvent {
    /// A message for us (also at connection for those waiting); acknowledge with `Ack`.
    Message(ChatMessage),
    /// A friend came online or went offline.
    Presence {
        /// Who.
        name: String,
        /// Online now.
        online: bool,
    },
    /// Someone asks to be friends.
    FriendRequest {
        /// Who.
        from: String,
    },
    /// A friendship began (`Some(Friends)`) or ended or a request went (`None`).
    Friendship {
        /// With whom.
        name: String,
        /// Where it stands now.
        state: Option<FriendState>,
    },
    /// Sent once, right after the messages that were waiting at login: what follows is new.
    CaughtUp,
    /// A friend chose the colour of their name (`None`: back to the one derived from it).
    Color {
        /// Who.
        name: String,
        /// The colour now.
        color: Option<String>,
    },
    /// A message we sent from another session of ours, stored (as XMPP's carbons): so
    /// every session shows the whole conversation. Not acknowledged, not stored again.
    Sent(ChatMessage),
}

/// The colours a user may choose for their name (ANSI's eight, bright and plain).
pub const COLOURS: &[&str] = &[
    "red",
    "green",
    "yellow",
    "blue",
    "magenta",
    "cyan",
    "bright-red",
    "bright-green",
    "bright-yellow",
    "bright-blue",
    "bright-magenta",
    "bright-cyan",
];
