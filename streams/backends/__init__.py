"""Model backends behind the teacher/student workers: http, replay, transformers.

Each returns exactly one :class:`Prediction` per request; failures become ``error``
predictions, never lost requests. Import the implementations from their modules
(``streams.backends.http`` …): the transformers one needs the optional ``training`` extra.
"""

from streams.backends.base import Backend, BadResponse, Prediction, RequestLike, check_intent_probs

__all__ = ["Backend", "BadResponse", "Prediction", "RequestLike", "check_intent_probs"]
