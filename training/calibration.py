"""Temperature scaling (Guo et al. 2017; the guide's scenario 6).

One scalar T > 0 divides every logit; it is fitted on held-out negative log-likelihood, so
it changes confidence but never the top-1 class (accuracy, recall and teacher_match stay
put while ECE usually falls). The fitted T is folded into the classifier's last linear layer
(weight and bias divided by T), so the saved model is calibrated as it stands: any
``AutoModelForSequenceClassification`` consumer, the ``transformers`` worker backend
included, gets calibrated probabilities without knowing about T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

T_MIN, T_MAX = 0.05, 20.0


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    return float(F.cross_entropy(logits.float() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T in [0.05, 20] minimising held-out NLL (LBFGS on log T; 1.0 for empty input)."""
    if logits.numel() == 0:
        return 1.0
    logits = logits.detach().float()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        return 1.0
    t = min(max(t, T_MIN), T_MAX)
    # LBFGS can stop on a plateau; never return a T that is worse than doing nothing.
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0


def output_layer(model: torch.nn.Module, num_labels: int) -> torch.nn.Linear | None:
    """The module that produces the logits: the last Linear with ``num_labels`` outputs."""
    found = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
            found = module
    return found


def fold_temperature(model: torch.nn.Module, num_labels: int, temperature: float) -> bool:
    """Divide the output layer by T in place; False when no such layer was found."""
    layer = output_layer(model, num_labels)
    if layer is None:
        return False
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
    return True
