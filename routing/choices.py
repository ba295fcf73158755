"""Choices for routing models; values match `routing.engine.types` where they overlap."""

from django.db import models


class ProviderKind(models.TextChoices):
    OPENAI_COMPAT = "openai_compat", "OpenAI-compatible HTTP"
    BEDROCK = "bedrock", "Amazon Bedrock (Converse)"
    REPLAY = "replay", "Replay of recorded answers (embedded)"


class ScorerKind(models.TextChoices):
    HEURISTIC = "heuristic", "Heuristic (stop reason, hedging, refusals, arithmetic)"
    LOGPROB = "logprob", "Token log-probabilities (heuristic when absent)"
    LEARNED = "learned", "Learned from this policy's labels (heuristic until a version is active)"


class OptimisationGoal(models.TextChoices):
    COST = "cost", "Lowest cost"
    BALANCED = "balanced", "Balanced"
    QUALITY = "quality", "Highest quality"
    LATENCY = "latency", "Lowest latency"


class ExperimentStatus(models.TextChoices):
    RUNNING = "running", "Running"
    ENDED = "ended", "Ended"


class RecordStatus(models.TextChoices):
    ANSWERED = "answered", "Answered"
    FAILED = "failed", "Every tier failed"
    CANCELLED = "cancelled", "Client went away"
    # Turned away before any model was called: a budget, a rate limit, bad input.
    REFUSED = "refused", "Refused"


class CacheKind(models.TextChoices):
    NONE = "", "Not cached"
    EXACT = "exact", "Exact match"
    SEMANTIC = "semantic", "Semantic match"


class Extractor(models.TextChoices):
    """How a quality gate compares answers: by their final answer of a kind, or by meaning."""

    AUTO = "auto", "Automatic (final answer where there is one, else meaning)"
    NUMBER = "number", "Final number"
    OPTION = "option", "Option letter"
    DATE = "date", "Date"
    YES_NO = "yesno", "Yes or no"
    SPAN = "span", "Short answer"
    MEANING = "text", "Meaning of the whole answer (embeddings)"


class AttemptOutcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    ESCALATED = "escalated", "Escalated"
    FAILED = "failed", "Failed"
    SAMPLE = "sample", "Sample for the quality gate"
    JUDGE = "judge", "Judge's grade for the quality gate"


# --- Quality loop --------------------------------------------------------------------------


class LabelSource(models.TextChoices):
    FEEDBACK = "feedback", "Feedback from the app"
    SHADOW = "shadow", "Shadow evaluation by the strongest tier"
    REPLAY = "replay", "Recorded correctness (replay provider)"


class ShadowStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class JudgeMethod(models.TextChoices):
    EXACT_MATCH = "exact_match", "Exact match of the final answer"
    LLM_JUDGE = "llm_judge", "The strongest tier as judge"


class ScorerVersionKind(models.TextChoices):
    LEARNED = "learned", "Learned scorer (prompt and answer)"
    ROUTER = "router", "Prompt-only router"


class UnknownFields(models.TextChoices):
    """What a policy does with chat-request fields the API does not know."""

    REFUSE = "refuse", "Refuse them (400 unsupported_parameter)"
    PASS = "pass", "Pass them to OpenAI-compatible providers"


class EndpointKind(models.TextChoices):
    CHAT = "chat", "Chat completions"
    EMBEDDINGS = "embeddings", "Embeddings"
