//! The vocabulary of the classic protocol: a member, the requests and answers of the state machine in
//! [`super::classic`], and the limits that bound a group's memory. Plain data; owned like the group that holds
//! it (under its shard's lock).

use bytes::Bytes;
use tokio::sync::oneshot;

/// Most protocols (assignors) one member may offer; a consumer offers one per configured assignor.
pub const MAX_PROTOCOLS_PER_MEMBER: usize = 64;
/// Largest sum of protocol names and metadata of one member, and largest assignment of one member. The group's
/// whole state is written as one `GroupMetadata` record, which must fit one batch of `message_max_bytes`
/// (1 MiB by default) in `__consumer_offsets`, as in Kafka; bigger members could never complete a rebalance.
pub const MAX_MEMBER_BYTES: usize = 1 << 20;
/// Most members waiting to rejoin with the id they were given (MEMBER_ID_REQUIRED) per group: a join storm of
/// clients that never come back costs at most this many entries, each expiring after its session timeout.
pub const MAX_PENDING_MEMBERS: usize = 10_000;

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (may still have committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment delivered.
    Stable,
}

impl GroupState {
    /// Kafka's name of the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinOutcome {
    /// Error code (0 = none).
    pub error: i16,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9+: the leader must not compute an assignment (a static leader rejoined a Stable group).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub(super) fn error(error: i16, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncOutcome {
    /// Error code.
    pub error: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment (empty bytes are a valid assignment).
    pub assignment: Bytes,
}

/// An answer now, or later through the receiver.
pub enum Reply<T> {
    /// Answered now.
    Now(T),
    /// Answered when the group gets there.
    Wait(oneshot::Receiver<T>),
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id ("" for a first join).
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: i32,
    /// Rebalance timeout.
    pub rebalance_timeout: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a first join gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// v9+: the answer may tell a rejoining static leader to skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

/// Limits from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`.
    pub max_size: usize,
}

/// One member.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout (ms).
    pub session_timeout: i32,
    /// Rebalance timeout (ms).
    pub rebalance_timeout: i32,
    /// Offered protocols.
    pub protocols: Vec<(String, Bytes)>,
    /// Current assignment.
    pub assignment: Bytes,
    /// The pending JoinGroup answer while the member waits for the rebalance.
    pub(super) awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// The pending SyncGroup answer while the member waits for the leader's assignment.
    pub(super) awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// When the member's session expires unless it heartbeats (ms).
    pub(super) heartbeat_deadline: i64,
    /// A static member that replaced its old incarnation in a Stable group, until the record naming its new id
    /// is written: answered on replay, undone if the write fails.
    pub(super) static_rejoin: Option<StaticRejoin>,
}

/// What a static member's replacement changed, to answer it once written or undo it (Kafka's
/// `updateStaticMemberThenRebalanceOrCompleteJoin`).
#[derive(Debug)]
pub(super) struct StaticRejoin {
    /// The replaced incarnation's member id.
    pub old_id: String,
    /// The leader before the replacement (JoinGroup before v9 names it, so a rejoining leader acts as follower).
    pub old_leader: Option<String>,
    /// The old incarnation's protocols and timeouts.
    pub old_protocols: Vec<(String, Bytes)>,
    pub old_session_timeout: i32,
    pub old_rebalance_timeout: i32,
    /// The request's version allows `skip_assignment`.
    pub supports_skip_assignment: bool,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}
