"""Kafka error codes as typed exceptions.

One table maps each wire error code to an exception class with a readable name and a
``retriable`` flag, so the broker can raise ``CorruptMessageError("...")`` deep in the
storage engine and a request handler can turn it back into the code a client expects.

    >>> from broker.protocol.errors import error_for_code, OffsetOutOfRangeError
    >>> error_for_code(1) is OffsetOutOfRangeError
    True
"""

from __future__ import annotations

__all__ = ["ERROR_TABLE", "NONE", "KafkaError", "error_for_code"]


class KafkaError(Exception):
    """Base of every error that has a Kafka error code."""

    code: int = -1
    name: str = "UNKNOWN_SERVER_ERROR"
    retriable: bool = False
    description: str = "The server experienced an unexpected error when processing the request."
    record_index: int | None = None  # INVALID_RECORD: the index in its batch of the bad record

    def __init__(self, message: str | None = None):
        super().__init__(message or self.description)

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.args[0]}"


NONE = 0  # the error code of success

# code, NAME, retriable, description.  Codes and retriability follow Apache Kafka's
# org.apache.kafka.common.protocol.Errors; descriptions are ours.
ERROR_TABLE: tuple[tuple[int, str, bool, str], ...] = (
    (-1, "UNKNOWN_SERVER_ERROR", False, "The server hit an unexpected error."),
    (1, "OFFSET_OUT_OF_RANGE", False, "The requested offset is outside the log's range."),
    (2, "CORRUPT_MESSAGE", True, "A record batch failed its CRC or structure check."),
    (3, "UNKNOWN_TOPIC_OR_PARTITION", True, "This server has no such topic or partition."),
    (4, "INVALID_FETCH_SIZE", False, "The requested fetch size is invalid."),
    (5, "LEADER_NOT_AVAILABLE", True, "The partition has no live leader right now."),
    (6, "NOT_LEADER_OR_FOLLOWER", True, "This server does not host that partition."),
    (7, "REQUEST_TIMED_OUT", True, "The request timed out."),
    (8, "BROKER_NOT_AVAILABLE", False, "The broker is not available."),
    (9, "REPLICA_NOT_AVAILABLE", True, "The replica is not available."),
    (10, "MESSAGE_TOO_LARGE", False, "A record batch is larger than the configured maximum."),
    (12, "OFFSET_METADATA_TOO_LARGE", False, "The committed offset's metadata is too large."),
    (13, "NETWORK_EXCEPTION", True, "The connection broke before a response arrived."),
    (14, "COORDINATOR_LOAD_IN_PROGRESS", True, "The coordinator is still loading."),
    (15, "COORDINATOR_NOT_AVAILABLE", True, "The coordinator is not available."),
    (16, "NOT_COORDINATOR", True, "This server is not the coordinator for that group."),
    (17, "INVALID_TOPIC_EXCEPTION", False, "The topic name is invalid."),
    (18, "RECORD_LIST_TOO_LARGE", False, "The batch is larger than the segment size."),
    (19, "NOT_ENOUGH_REPLICAS", True, "Fewer in-sync replicas than required."),
    (20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", True, "Written, but to fewer replicas than required."),
    (21, "INVALID_REQUIRED_ACKS", False, "The produce request's acks value is invalid."),
    (22, "ILLEGAL_GENERATION", False, "The group generation is not current."),
    (23, "INCONSISTENT_GROUP_PROTOCOL", False, "The member's protocols do not match the group's."),
    (24, "INVALID_GROUP_ID", False, "The group id is invalid."),
    (25, "UNKNOWN_MEMBER_ID", False, "The coordinator does not know this member."),
    (26, "INVALID_SESSION_TIMEOUT", False, "The session timeout is out of the allowed range."),
    (27, "REBALANCE_IN_PROGRESS", False, "The group is rebalancing; rejoin."),
    (28, "INVALID_COMMIT_OFFSET_SIZE", False, "The committed offset data size is invalid."),
    (29, "TOPIC_AUTHORIZATION_FAILED", False, "Not authorized for that topic."),
    (30, "GROUP_AUTHORIZATION_FAILED", False, "Not authorized for that group."),
    (31, "CLUSTER_AUTHORIZATION_FAILED", False, "Not authorized for the cluster."),
    (32, "INVALID_TIMESTAMP", False, "A record timestamp is out of the accepted range."),
    (33, "UNSUPPORTED_SASL_MECHANISM", False, "The server does not enable that SASL mechanism."),
    (34, "ILLEGAL_SASL_STATE", False, "That request is not expected in this SASL state."),
    (35, "UNSUPPORTED_VERSION", False, "The server does not serve that API version."),
    (36, "TOPIC_ALREADY_EXISTS", False, "A topic of that name exists already."),
    (37, "INVALID_PARTITIONS", False, "The number of partitions is invalid."),
    (38, "INVALID_REPLICATION_FACTOR", False, "The replication factor is invalid."),
    (39, "INVALID_REPLICA_ASSIGNMENT", False, "The replica assignment is invalid."),
    (40, "INVALID_CONFIG", False, "The configuration is invalid."),
    (41, "NOT_CONTROLLER", True, "This server is not the controller."),
    (42, "INVALID_REQUEST", False, "The request is malformed."),
    (43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", False, "Only record batch format v2 is accepted."),
    (44, "POLICY_VIOLATION", False, "The request violates a configured policy."),
    (45, "OUT_OF_ORDER_SEQUENCE_NUMBER", False, "The producer sequence number is out of order."),
    (46, "DUPLICATE_SEQUENCE_NUMBER", False, "The producer sequence number is a duplicate."),
    (47, "INVALID_PRODUCER_EPOCH", False, "The producer epoch is stale."),
    (48, "INVALID_TXN_STATE", False, "The transactional state is invalid."),
    (51, "CONCURRENT_TRANSACTIONS", True, "Another operation on the transaction is under way."),
    (53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", False, "Not authorized for that id."),
    (54, "SECURITY_DISABLED", False, "Security features are disabled."),
    (56, "KAFKA_STORAGE_ERROR", True, "A disk error stopped the operation; nothing was written."),
    (58, "SASL_AUTHENTICATION_FAILED", False, "SASL authentication failed."),
    (59, "UNKNOWN_PRODUCER_ID", False, "The producer id is unknown."),
    (68, "NON_EMPTY_GROUP", False, "The group is not empty."),
    (69, "GROUP_ID_NOT_FOUND", False, "The group does not exist."),
    (70, "FETCH_SESSION_ID_NOT_FOUND", True, "The fetch session id is unknown."),
    (71, "INVALID_FETCH_SESSION_EPOCH", True, "The fetch session epoch is invalid."),
    (74, "FENCED_LEADER_EPOCH", True, "The leader epoch is older than the broker's."),
    (75, "UNKNOWN_LEADER_EPOCH", True, "The leader epoch is newer than the broker's."),
    (76, "UNSUPPORTED_COMPRESSION_TYPE", False, "The compression codec is not supported."),
    (77, "STALE_BROKER_EPOCH", False, "The broker epoch is older than the broker's current one."),
    (78, "OFFSET_NOT_AVAILABLE", True, "The offset is not available yet."),
    (79, "MEMBER_ID_REQUIRED", False, "Rejoin with the member id the coordinator gave."),
    (80, "PREFERRED_LEADER_NOT_AVAILABLE", True, "The preferred leader is not live or in sync."),
    (81, "GROUP_MAX_SIZE_REACHED", False, "The group is full."),
    (82, "FENCED_INSTANCE_ID", False, "Another member with this instance id joined."),
    (83, "ELIGIBLE_LEADERS_NOT_AVAILABLE", True, "No replica of the partition can lead it now."),
    (84, "ELECTION_NOT_NEEDED", True, "The partition already has the leader asked for."),
    (86, "GROUP_SUBSCRIBED_TO_TOPIC", False, "The group is consuming that topic."),
    (87, "INVALID_RECORD", False, "A record batch breaks the format's rules."),
    (91, "RESOURCE_NOT_FOUND", False, "The resource does not exist."),
    (92, "DUPLICATE_RESOURCE", False, "The resource is named more than once in the request."),
    (93, "UNACCEPTABLE_CREDENTIAL", False, "The credential does not meet the requirements."),
    (100, "UNKNOWN_TOPIC_ID", True, "This server has no topic with that topic id."),
    (114, "MISMATCHED_ENDPOINT_TYPE", False, "The request was sent to the wrong endpoint type."),
    (115, "UNSUPPORTED_ENDPOINT_TYPE", False, "This endpoint type is not supported."),
)

_BY_CODE: dict[int, type[KafkaError]] = {}


def _class_name(name: str) -> str:
    stem = "".join(part.capitalize() for part in name.split("_"))
    stem = stem.removesuffix("Exception").removesuffix("Error")
    return stem + "Error"


for _code, _name, _retriable, _description in ERROR_TABLE:
    _cls = type(
        _class_name(_name),
        (KafkaError,),
        {
            "code": _code,
            "name": _name,
            "retriable": _retriable,
            "description": _description,
            "__module__": __name__,
            "__doc__": f"{_name} ({_code}): {_description}",
        },
    )
    _BY_CODE[_code] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)

# The base class stands for UNKNOWN_SERVER_ERROR too, so `except KafkaError` catches it.
UnknownServerError = _BY_CODE[-1]


def error_for_code(code: int) -> type[KafkaError]:
    """The exception class for a wire error code (UnknownServerError for codes we do not know)."""
    return _BY_CODE.get(code, UnknownServerError)


def error_code(exc: BaseException) -> int:
    """The wire error code for an exception: its own for a KafkaError, else -1."""
    return exc.code if isinstance(exc, KafkaError) else -1


__all__ += ["error_code"]


class UnexpectedAppendOffsetError(KafkaError):
    """A replica's append whose first batch does not start at its log end, or whose batches
    do not follow each other (Kafka's UnexpectedAppendOffsetException, which has no wire
    code: a replica fetcher answers it by truncating, never a client)."""

    description = "Replicated batches do not continue the log."


__all__ += ["UnexpectedAppendOffsetError"]

# Names imported by other modules; spelled out so readers and linters can find them.
OffsetOutOfRangeError = _BY_CODE[1]
CorruptMessageError = _BY_CODE[2]
UnknownTopicOrPartitionError = _BY_CODE[3]
MessageTooLargeError = _BY_CODE[10]
InvalidTopicError = _BY_CODE[17]
RecordListTooLargeError = _BY_CODE[18]
InvalidTimestampError = _BY_CODE[32]
UnsupportedVersionError = _BY_CODE[35]
UnsupportedForMessageFormatError = _BY_CODE[43]
CoordinatorNotAvailableError = _BY_CODE[15]
NotCoordinatorError = _BY_CODE[16]
IllegalGenerationError = _BY_CODE[22]
InconsistentGroupProtocolError = _BY_CODE[23]
InvalidGroupIdError = _BY_CODE[24]
UnknownMemberIdError = _BY_CODE[25]
InvalidSessionTimeoutError = _BY_CODE[26]
RebalanceInProgressError = _BY_CODE[27]
MemberIdRequiredError = _BY_CODE[79]
KafkaStorageError = _BY_CODE[56]
UnsupportedCompressionTypeError = _BY_CODE[76]
InvalidRecordError = _BY_CODE[87]
OutOfOrderSequenceNumberError = _BY_CODE[45]
InvalidProducerEpochError = _BY_CODE[47]
BrokerNotAvailableError = _BY_CODE[8]
NotControllerError = _BY_CODE[41]
StaleBrokerEpochError = _BY_CODE[77]
FencedLeaderEpochError = _BY_CODE[74]
FencedInstanceIdError = _BY_CODE[82]
UnknownLeaderEpochError = _BY_CODE[75]
TopicAuthorizationFailedError = _BY_CODE[29]
GroupAuthorizationFailedError = _BY_CODE[30]
ClusterAuthorizationFailedError = _BY_CODE[31]
TransactionalIdAuthorizationFailedError = _BY_CODE[53]
SecurityDisabledError = _BY_CODE[54]
InvalidRequestError = _BY_CODE[42]
UnsupportedSaslMechanismError = _BY_CODE[33]
IllegalSaslStateError = _BY_CODE[34]
SaslAuthenticationFailedError = _BY_CODE[58]
ResourceNotFoundError = _BY_CODE[91]
DuplicateResourceError = _BY_CODE[92]
UnacceptableCredentialError = _BY_CODE[93]
