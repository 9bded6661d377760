from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("agency", "project", "schema_fingerprint", "bits", "groups", "records", "excluded", "rejected_values", "key_epoch", "profile")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_VALUES_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    agency: str
    project: str
    schema_fingerprint: str
    bits: int
    groups: _containers.RepeatedScalarFieldContainer[str]
    records: int
    excluded: int
    rejected_values: int
    key_epoch: int
    profile: str
    def __init__(self, agency: _Optional[str] = ..., project: _Optional[str] = ..., schema_fingerprint: _Optional[str] = ..., bits: _Optional[int] = ..., groups: _Optional[_Iterable[str]] = ..., records: _Optional[int] = ..., excluded: _Optional[int] = ..., rejected_values: _Optional[int] = ..., key_epoch: _Optional[int] = ..., profile: _Optional[str] = ...) -> None: ...

class FetchEncodingsRequest(_message.Message):
    __slots__ = ("job_id", "chunk_records")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_RECORDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    chunk_records: int
    def __init__(self, job_id: _Optional[str] = ..., chunk_records: _Optional[int] = ...) -> None: ...

class EncodingChunk(_message.Message):
    __slots__ = ("record_ids", "filters", "group_filters", "present", "last", "total_records", "digest", "project", "schema_fingerprint", "bits", "groups", "key_epoch", "packed", "profile")
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FILTERS_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    KEY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: bytes
    group_filters: bytes
    present: bytes
    last: bool
    total_records: int
    digest: str
    project: str
    schema_fingerprint: str
    bits: int
    groups: _containers.RepeatedScalarFieldContainer[str]
    key_epoch: int
    packed: bytes
    profile: str
    def __init__(self, record_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[bytes] = ..., group_filters: _Optional[bytes] = ..., present: _Optional[bytes] = ..., last: _Optional[bool] = ..., total_records: _Optional[int] = ..., digest: _Optional[str] = ..., project: _Optional[str] = ..., schema_fingerprint: _Optional[str] = ..., bits: _Optional[int] = ..., groups: _Optional[_Iterable[str]] = ..., key_epoch: _Optional[int] = ..., packed: _Optional[bytes] = ..., profile: _Optional[str] = ...) -> None: ...

class ResultRow(_message.Message):
    __slots__ = ("record_id", "band", "similarity", "reference", "shared_with", "agreement", "same_person_as")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    SAME_PERSON_AS_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    band: str
    similarity: float
    reference: str
    shared_with: _containers.RepeatedScalarFieldContainer[str]
    agreement: str
    same_person_as: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, record_id: _Optional[str] = ..., band: _Optional[str] = ..., similarity: _Optional[float] = ..., reference: _Optional[str] = ..., shared_with: _Optional[_Iterable[str]] = ..., agreement: _Optional[str] = ..., same_person_as: _Optional[_Iterable[str]] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("job_id", "rows", "last", "total_rows", "digest")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    rows: _containers.RepeatedCompositeFieldContainer[ResultRow]
    last: bool
    total_rows: int
    digest: str
    def __init__(self, job_id: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[ResultRow, _Mapping]]] = ..., last: _Optional[bool] = ..., total_rows: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class DeliveryReceipt(_message.Message):
    __slots__ = ("job_id", "rows", "digest")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    rows: int
    digest: str
    def __init__(self, job_id: _Optional[str] = ..., rows: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("agencies", "threshold", "review_threshold", "blocking", "scoring")
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    agencies: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    review_threshold: float
    blocking: str
    scoring: str
    def __init__(self, agencies: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ..., review_threshold: _Optional[float] = ..., blocking: _Optional[str] = ..., scoring: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "message", "done", "state", "summary")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    message: str
    done: bool
    state: str
    summary: str
    def __init__(self, job_id: _Optional[str] = ..., message: _Optional[str] = ..., done: _Optional[bool] = ..., state: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "state", "error", "created", "finished", "agencies", "delivered", "released", "summary")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    error: str
    created: str
    finished: str
    agencies: _containers.RepeatedScalarFieldContainer[str]
    delivered: _containers.RepeatedScalarFieldContainer[str]
    released: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., created: _Optional[str] = ..., finished: _Optional[str] = ..., agencies: _Optional[_Iterable[str]] = ..., delivered: _Optional[_Iterable[str]] = ..., released: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("job_id", "digest")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    digest: str
    def __init__(self, job_id: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class AuditQuery(_message.Message):
    __slots__ = ("job", "actor", "action", "since", "until", "seq")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    job: str
    actor: str
    action: str
    since: str
    until: str
    seq: int
    def __init__(self, job: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class AuditVerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditVerifyResponse(_message.Message):
    __slots__ = ("ok", "checked", "first_bad", "reason", "public_key_pem")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    first_bad: int
    reason: str
    public_key_pem: str
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., first_bad: _Optional[int] = ..., reason: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class KeyCardMessage(_message.Message):
    __slots__ = ("card",)
    CARD_FIELD_NUMBER: _ClassVar[int]
    card: bytes
    def __init__(self, card: _Optional[bytes] = ...) -> None: ...

class ListKeyCardsRequest(_message.Message):
    __slots__ = ("agencies",)
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    agencies: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agencies: _Optional[_Iterable[str]] = ...) -> None: ...

class KeyCards(_message.Message):
    __slots__ = ("cards",)
    CARDS_FIELD_NUMBER: _ClassVar[int]
    cards: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, cards: _Optional[_Iterable[bytes]] = ...) -> None: ...

class WrappedSecrets(_message.Message):
    __slots__ = ("project", "epoch", "wrapped")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_FIELD_NUMBER: _ClassVar[int]
    project: str
    epoch: int
    wrapped: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, project: _Optional[str] = ..., epoch: _Optional[int] = ..., wrapped: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FetchWrappedRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class RosterRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class Roster(_message.Message):
    __slots__ = ("project", "creator", "members", "created")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    project: str
    creator: str
    members: _containers.RepeatedScalarFieldContainer[str]
    created: str
    def __init__(self, project: _Optional[str] = ..., creator: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., created: _Optional[str] = ...) -> None: ...

class RelayAck(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("packed",)
    PACKED_FIELD_NUMBER: _ClassVar[int]
    packed: bytes
    def __init__(self, packed: _Optional[bytes] = ...) -> None: ...

class QueryAnswer(_message.Message):
    __slots__ = ("record_id", "band", "score", "shared_with")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    band: str
    score: float
    shared_with: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, record_id: _Optional[str] = ..., band: _Optional[str] = ..., score: _Optional[float] = ..., shared_with: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("answers", "job_id", "expires", "remaining")
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[QueryAnswer]
    job_id: str
    expires: str
    remaining: int
    def __init__(self, answers: _Optional[_Iterable[_Union[QueryAnswer, _Mapping]]] = ..., job_id: _Optional[str] = ..., expires: _Optional[str] = ..., remaining: _Optional[int] = ...) -> None: ...
