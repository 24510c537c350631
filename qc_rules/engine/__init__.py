"""The rule engine: expression language, models, loader, evaluation and the versioned store.

Importing this package is cheap (standard library + PyYAML only); numpy is imported by the
batch evaluator when it runs.
"""

from radqc.qc_rules.engine.evaluate import evaluate_batch, evaluate_exam, score_exam
from radqc.qc_rules.engine.expr import EvalError, ExprError, compile_expr
from radqc.qc_rules.engine.loader import RuleLoadError, load_library, load_ruleset_documents
from radqc.qc_rules.engine.model import ExamResult, Failure, Rule, Ruleset, Standard

__all__ = [
    "EvalError", "ExamResult", "ExprError", "Failure", "Rule", "RuleLoadError", "Ruleset", "Standard",
    "compile_expr", "evaluate_batch", "evaluate_exam", "load_library", "load_ruleset_documents", "score_exam",
]
