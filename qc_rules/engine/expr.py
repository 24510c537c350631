"""The rule expression language: a small, safe, Python-like language compiled to closures.

Why not ``eval``: rules are data edited by QC staff and imported from files, so a rule is
untrusted input. An expression is parsed with ``ast.parse(mode="eval")`` and walked by a
*whitelist*; every accepted node becomes a closure, so evaluation never calls Python's
``eval``/``exec`` and never touches an object attribute. Parsing and validation happen once,
at load; evaluating a compiled rule is a chain of plain function calls (a few µs).

What is allowed (CONTRACT §3): literals (str, int, float, bool, None, lists/tuples/sets of
them), names (facts, params, comprehension variables), ``and or not``, comparisons
(``== != < <= > >= in not in``, chained), ``+ - * / // %`` and unary ``- +``, ``a if c else b``,
calls of registered functions by bare name (positional/keyword arguments), subscripts and
slices, and ``any(... for x in xs if ...)`` / ``all(...)`` generator arguments.

What is refused at load, with the rule id and the position: attribute access, ``**``, bit
operators, lambdas, assignment (``:=``), f-strings, starred arguments, dict/set
comprehensions, dunder or underscore names, unknown names and unknown functions, literals
over the size bounds, more than :data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels, and
constant sub-expressions whose result would exceed the bounds (``'a' * 1000000000``).
At run time a step budget (:data:`STEP_BUDGET` function calls and loop iterations) and
result-size bounds on ``+``/``*`` stop anything the static checks cannot see.

``None`` semantics: ordering comparisons (``< <= > >=``) and ``in``/``not in`` with a
``None`` operand are false; ``==``/``!=`` compare as Python does (``x == None`` works);
arithmetic with ``None`` gives ``None``; division by zero gives ``None``; indexing
``None`` or out of range gives ``None``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_CHARS = 4000
MAX_NODES = 400
MAX_DEPTH = 32
MAX_STR = 10_000  # characters in a literal or in the result of + / *
MAX_SEQ = 10_000  # items in a literal or in the result of + / *
MAX_INT = 10**18
STEP_BUDGET = 100_000  # function calls + comprehension iterations per evaluation

#: Functions the engine itself provides (pure, bounded). The library's FUNCTIONS add to them.
Env = dict


class ExprError(ValueError):
    """An expression that does not parse or is not allowed; says which rule and where."""

    def __init__(self, message: str, *, rule_id: str | None = None, where: str = "expr",
                 line: int | None = None, col: int | None = None) -> None:
        self.rule_id = rule_id
        self.where = where
        self.line = line
        self.col = col
        self.detail = message
        pos = f" at column {col + 1}" if col is not None else ""
        if line is not None and line > 1:
            pos = f" at line {line}, column {(col or 0) + 1}"
        prefix = f"rule {rule_id} " if rule_id else ""
        super().__init__(f"{prefix}{where}{pos}: {message}")


class EvalError(RuntimeError):
    """An expression failed while evaluating (wrong types, step budget exhausted)."""


#: Names of derived columns in batch plans (underscore names are refused in rule text).
DERIVED_PREFIX = "__d"


class Raised:
    """A function call that raised while a batch precomputed it; re-raised where it is read,
    so a call a short-circuit would have skipped never becomes an error."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (Raised, (self.message,))


class _Budget:
    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise EvalError(f"step budget of {STEP_BUDGET} exhausted / 计算步数超出上限")


class Scope:
    """What one evaluation sees: the facts, the rule params, loop variables, the budget, and
    an optional memo of pure-function results (shared across the rules of one evaluate_exam call)."""

    __slots__ = ("facts", "params", "locals", "budget", "memo")

    def __init__(self, facts: Mapping[str, Any], params: Mapping[str, Any] | None = None,
                 memo: dict | None = None, steps: int = STEP_BUDGET) -> None:
        self.facts = facts
        self.params = params or {}
        self.locals: dict[str, Any] = {}
        self.budget = _Budget(steps)
        self.memo = memo


Closure = Callable[[Scope], Any]


# -- operator semantics (shared by scalar and batch evaluation) --------------------------------

def _check_size(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STR:
        raise EvalError(f"string result longer than {MAX_STR} characters / 字符串结果过长")
    if isinstance(value, (list, tuple)) and len(value) > MAX_SEQ:
        raise EvalError(f"list result longer than {MAX_SEQ} items / 列表结果过长")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise EvalError("integer result out of range / 整数结果超出范围")
    return value


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 1


def op_add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, (str, list, tuple)) and isinstance(b, (str, list, tuple)) and len(a) + len(b) > MAX_STR:
        raise EvalError("result too long / 结果过长")
    return _check_size(a + b)


def op_mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
            if len(seq) * max(n, 0) > MAX_STR:
                raise EvalError("repetition result too long / 重复结果过长")
    return _check_size(a * b)


def _none_or(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def op(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        return _check_size(fn(a, b))
    return op


def _div_like(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def op(a: Any, b: Any) -> Any:
        if a is None or b is None or b == 0:
            return None
        return fn(a, b)
    return op


BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: op_add,
    ast.Sub: _none_or(operator.sub),
    ast.Mult: op_mul,
    ast.Div: _div_like(operator.truediv),
    ast.FloorDiv: _div_like(operator.floordiv),
    ast.Mod: _div_like(operator.mod),
}


def _ordered(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def op(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return bool(fn(a, b))
        except TypeError as exc:
            raise EvalError(f"cannot compare {type(a).__name__} with {type(b).__name__}") from exc
    return op


def op_in(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return a in b
    except TypeError as exc:
        raise EvalError(f"'in' needs a list or text on the right, got {type(b).__name__}") from exc


def op_not_in(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    return not op_in(a, b)


CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: _ordered(operator.lt),
    ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt),
    ast.GtE: _ordered(operator.ge),
    ast.In: op_in,
    ast.NotIn: op_not_in,
}


def _neg(a: Any) -> Any:
    if a is None:
        return None
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise EvalError(f"unary minus needs a number, got {type(a).__name__}")
    return -a


def _pos(a: Any) -> Any:
    if a is None:
        return None
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise EvalError(f"unary plus needs a number, got {type(a).__name__}")
    return a


def _subscript(container: Any, key: Any) -> Any:
    if container is None or key is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, (list, tuple, str)):
        if isinstance(key, slice):
            return container[key]
        if isinstance(key, bool) or not isinstance(key, int):
            raise EvalError(f"index must be an integer, got {type(key).__name__}")
        try:
            return container[key]
        except IndexError:
            return None
    raise EvalError(f"cannot index {type(container).__name__}")


def _iterable(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return list(value)
    if isinstance(value, (list, tuple, str, set, frozenset)):
        return value
    raise EvalError(f"cannot iterate over {type(value).__name__}")


# -- engine built-ins ---------------------------------------------------------------------------

def _len(x: Any) -> int:
    return 0 if x is None else len(x)


def _agg(fn: Callable[[Iterable[Any]], Any]) -> Callable[..., Any]:
    def agg(xs: Any) -> Any:
        values = [v for v in _iterable(xs) if v is not None]
        return fn(values) if values else None
    return agg


def _abs(x: Any) -> Any:
    return None if x is None else abs(x)


def _str(x: Any) -> Any:
    return None if x is None else str(x)[:MAX_STR]


def _num(cast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def conv(x: Any) -> Any:
        if x is None or x == "":
            return None
        try:
            return cast(x)
        except (TypeError, ValueError):
            return None
    return conv


#: Built-ins every expression may call. ``any``/``all`` are handled specially (generators).
BUILTINS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "min": _agg(min),
    "max": _agg(max),
    "sum": _agg(sum),
    "abs": _abs,
    "str": _str,
    "int": _num(lambda x: int(float(x))),
    "float": _num(float),
    "round": lambda x, n=0: None if x is None else round(x, n),
    "lower": lambda x: None if x is None else str(x).lower(),
    "upper": lambda x: None if x is None else str(x).upper(),
    "strip": lambda x: None if x is None else str(x).strip(),
}
GENERATOR_FUNCTIONS = {"any": any, "all": all}
CONSTANT_NAMES = {"true": True, "false": False, "null": None}


# -- compilation --------------------------------------------------------------------------------

@dataclass
class Compiled:
    """A validated, compiled expression."""

    source: str
    fn: Closure
    names: frozenset[str]  # fact names read (params and loop variables excluded)
    calls: frozenset[str]  # function names called
    constant: bool = False
    tree: ast.Expression | None = field(default=None, repr=False)

    def __call__(self, scope: Scope) -> Any:
        return self.fn(scope)


_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt,
    ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.IfExp, ast.Call, ast.keyword, ast.Constant, ast.Name,
    ast.Load, ast.Store, ast.List, ast.Tuple, ast.Set, ast.Subscript, ast.Slice, ast.GeneratorExp,
    ast.comprehension,
)

_REFUSED_HINTS: dict[type, str] = {
    ast.Attribute: "attribute access is not allowed / 不允许访问属性",
    ast.Pow: "'**' is not allowed / 不允许使用乘方",
    ast.Lambda: "lambda is not allowed / 不允许 lambda",
    ast.NamedExpr: "assignment is not allowed / 不允许赋值",
    ast.JoinedStr: "f-strings are not allowed / 不允许 f-string",
    ast.Starred: "starred arguments are not allowed / 不允许 * 展开",
    ast.ListComp: "list comprehensions are not allowed; use any()/all() / 不允许列表推导",
    ast.SetComp: "set comprehensions are not allowed / 不允许集合推导",
    ast.DictComp: "dict comprehensions are not allowed / 不允许字典推导",
    ast.Dict: "dict literals are not allowed / 不允许字典字面量",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.LShift: "bit shifts are not allowed / 不允许位运算",
    ast.RShift: "bit shifts are not allowed / 不允许位运算",
    ast.BitOr: "bit operators are not allowed / 不允许位运算",
    ast.BitAnd: "bit operators are not allowed / 不允许位运算",
    ast.BitXor: "bit operators are not allowed / 不允许位运算",
    ast.Invert: "bit operators are not allowed / 不允许位运算",
    ast.MatMult: "'@' is not allowed",
    ast.Is: "'is' is not allowed; use == / 不允许 is，请用 ==",
    ast.IsNot: "'is not' is not allowed; use != / 不允许 is not，请用 !=",
}


class _Compiler:
    def __init__(self, source: str, functions: Mapping[str, Callable[..., Any]], params: Mapping[str, Any],
                 known_names: Iterable[str] | None, rule_id: str | None, where: str) -> None:
        self.source = source
        self.functions = functions
        self.params = params
        self.known = None if known_names is None else frozenset(known_names)
        self.rule_id = rule_id
        self.where = where
        self.names: set[str] = set()
        self.calls: set[str] = set()
        self.nodes = 0

    def fail(self, node: ast.AST | None, message: str) -> ExprError:
        return ExprError(message, rule_id=self.rule_id, where=self.where,
                         line=getattr(node, "lineno", None), col=getattr(node, "col_offset", None))

    # structural checks first (node count, depth, node types), then compile
    def check(self, node: ast.AST, depth: int = 0) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"expression too large (more than {MAX_NODES} nodes) / 表达式过大")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nested too deeply (more than {MAX_DEPTH} levels) / 嵌套过深")
        if not isinstance(node, _ALLOWED_NODES):
            hint = _REFUSED_HINTS.get(type(node), f"{type(node).__name__} is not allowed / 不允许的语法")
            raise self.fail(node, hint)
        if isinstance(node, ast.Name) and (node.id.startswith("_") or "__" in node.id):
            raise self.fail(node, f"name {node.id!r} is not allowed (underscore names are reserved) / 不允许的名称")
        if isinstance(node, ast.Constant):
            self.check_constant(node, node.value)
        for child in ast.iter_child_nodes(node):
            self.check(child, depth + 1)

    def check_constant(self, node: ast.AST, value: Any) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.fail(node, "integer literal out of range / 整数字面量超出范围")
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise self.fail(node, "non-finite number / 非有限数")
        elif isinstance(value, str):
            if len(value) > MAX_STR:
                raise self.fail(node, f"string literal longer than {MAX_STR} characters / 字符串字面量过长")
        else:
            raise self.fail(node, f"literal of type {type(value).__name__} is not allowed / 不允许的字面量")

    def compile(self, node: ast.AST, local: frozenset[str] = frozenset()) -> Closure:  # noqa: C901
        if isinstance(node, ast.Expression):
            return self.compile(node.body, local)
        if isinstance(node, ast.Constant):
            const_value = node.value
            return lambda s: const_value
        if isinstance(node, ast.Name):
            return self.name(node, local)
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v, local) for v in node.values]
            if isinstance(node.op, ast.And):
                def and_(s: Scope) -> Any:
                    value: Any = True
                    for p in parts:
                        value = p(s)
                        if not value:
                            return value
                    return value
                return and_

            def or_(s: Scope) -> Any:
                value: Any = False
                for p in parts:
                    value = p(s)
                    if value:
                        return value
                return value
            return or_
        if isinstance(node, ast.UnaryOp):
            inner = self.compile(node.operand, local)
            if isinstance(node.op, ast.Not):
                return lambda s: not inner(s)
            op1 = _neg if isinstance(node.op, ast.USub) else _pos
            return lambda s: op1(inner(s))
        if isinstance(node, ast.BinOp):
            left, right = self.compile(node.left, local), self.compile(node.right, local)
            op2 = BINOPS[type(node.op)]
            return lambda s: op2(left(s), right(s))
        if isinstance(node, ast.Compare):
            first = self.compile(node.left, local)
            ops = [CMPOPS[type(o)] for o in node.ops]
            rest = [self.compile(c, local) for c in node.comparators]
            if len(ops) == 1:
                op, right0 = ops[0], rest[0]
                return lambda s: op(first(s), right0(s))
            pairs = list(zip(ops, rest, strict=True))

            def chain(s: Scope) -> bool:
                a = first(s)
                for op_, r in pairs:
                    b = r(s)
                    if not op_(a, b):
                        return False
                    a = b
                return True
            return chain
        if isinstance(node, ast.IfExp):
            test, body, orelse = (self.compile(n, local) for n in (node.test, node.body, node.orelse))
            return lambda s: body(s) if test(s) else orelse(s)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if len(node.elts) > MAX_SEQ:
                raise self.fail(node, "list literal too long / 列表字面量过长")
            items = [self.compile(e, local) for e in node.elts]
            if isinstance(node, ast.Set):
                return lambda s: frozenset(i(s) for i in items)
            return lambda s: [i(s) for i in items]
        if isinstance(node, ast.Subscript):
            container = self.compile(node.value, local)
            if isinstance(node.slice, ast.Slice):
                lo, hi, st = (self.compile(p, local) if p is not None else (lambda s: None)
                              for p in (node.slice.lower, node.slice.upper, node.slice.step))

                def sliced(s: Scope) -> Any:
                    bounds = (lo(s), hi(s), st(s))
                    if any(b is not None and (isinstance(b, bool) or not isinstance(b, int)) for b in bounds):
                        raise EvalError("slice bounds must be integers")
                    if bounds[2] == 0:
                        return None
                    return _subscript(container(s), slice(*bounds))
                return sliced
            key = self.compile(node.slice, local)
            return lambda s: _subscript(container(s), key(s))
        if isinstance(node, ast.Call):
            return self.call(node, local)
        raise self.fail(node, f"{type(node).__name__} is not allowed here / 此处不允许该语法")

    def name(self, node: ast.Name, local: frozenset[str]) -> Closure:
        ident = node.id
        if ident.startswith(DERIVED_PREFIX):  # batch plans only: user text can never name these
            def derived(s: Scope) -> Any:
                value = s.facts.get(ident)
                if type(value) is Raised:
                    raise EvalError(value.message)
                return value
            return derived
        if ident in local:
            return lambda s: s.locals.get(ident)
        if ident in CONSTANT_NAMES:
            const = CONSTANT_NAMES[ident]
            return lambda s: const
        if ident in self.params:
            return lambda s: s.params.get(ident)
        if ident in self.functions or ident in BUILTINS or ident in GENERATOR_FUNCTIONS:
            raise self.fail(node, f"function {ident!r} used as a value; call it: {ident}(...) / 函数须调用")
        if self.known is not None and ident not in self.known:
            raise self.fail(node, f"unknown name {ident!r} (not a fact, param or loop variable) / 未知名称")
        self.names.add(ident)
        return lambda s: s.facts.get(ident)

    def call(self, node: ast.Call, local: frozenset[str]) -> Closure:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only registered functions may be called, by bare name / 只能按名称调用已注册函数")
        fname = node.func.id
        self.calls.add(fname)
        if fname in GENERATOR_FUNCTIONS:
            return self.generator_call(node, fname, local)
        fn = self.functions.get(fname) or BUILTINS.get(fname)
        if fn is None:
            raise self.fail(node, f"unknown function {fname!r} / 未知函数")
        if any(isinstance(a, ast.GeneratorExp) for a in node.args):
            raise self.fail(node, f"generator arguments are only allowed in any()/all(), not {fname}()")
        args = [self.compile(a, local) for a in node.args]
        if any(k.arg is None for k in node.keywords):
            raise self.fail(node, "'**' arguments are not allowed / 不允许 ** 展开")
        kwargs = [(str(k.arg), self.compile(k.value, local)) for k in node.keywords]
        memo_key = fname

        def invoke(s: Scope) -> Any:
            s.budget.spend()
            values = tuple(a(s) for a in args)
            kw = {k: v(s) for k, v in kwargs}
            memo = s.memo
            if memo is not None:
                try:
                    key = (memo_key, values, tuple(kw.items()))
                    hit = memo.get(key, memo)
                except TypeError:  # unhashable argument (a list): no memo
                    key, hit = None, memo
                if hit is not memo:
                    return hit
                result = fn(*values, **kw)
                if key is not None:
                    memo[key] = result
                return result
            return fn(*values, **kw)
        return invoke

    def generator_call(self, node: ast.Call, fname: str, local: frozenset[str]) -> Closure:
        agg = GENERATOR_FUNCTIONS[fname]
        if node.keywords or len(node.args) != 1:
            raise self.fail(node, f"{fname}() takes exactly one argument / {fname}() 只接受一个参数")
        arg = node.args[0]
        if not isinstance(arg, ast.GeneratorExp):
            inner = self.compile(arg, local)
            return lambda s: agg(_iterable(inner(s)))
        if len(arg.generators) != 1:
            raise self.fail(arg, "only one 'for' clause is allowed / 只允许一个 for 子句")
        gen = arg.generators[0]
        if gen.is_async or not isinstance(gen.target, ast.Name):
            raise self.fail(gen.target, "the loop variable must be a plain name / 循环变量须为简单名称")
        var = gen.target.id
        if var.startswith("_") or var in self.params:
            raise self.fail(gen.target, f"loop variable {var!r} is not allowed / 不允许的循环变量")
        source = self.compile(gen.iter, local)
        inner_local = local | {var}
        conditions = [self.compile(c, inner_local) for c in gen.ifs]
        element = self.compile(arg.elt, inner_local)

        def generate(s: Scope) -> bool:
            saved = s.locals.get(var, _MISSING)
            try:
                def values() -> Iterable[Any]:
                    for item in _iterable(source(s)):
                        s.budget.spend()
                        s.locals[var] = item
                        if all(c(s) for c in conditions):
                            yield element(s)
                return agg(values())
            finally:
                if saved is _MISSING:
                    s.locals.pop(var, None)
                else:
                    s.locals[var] = saved
        return generate


_MISSING = object()


def parse(source: str, *, rule_id: str | None = None, where: str = "expr") -> ast.Expression:
    """Parse with the size guard first (the CPython parser itself must never see a huge text)."""
    if not isinstance(source, str):
        raise ExprError(f"expression must be text, got {type(source).__name__}", rule_id=rule_id, where=where)
    if not source.strip():
        raise ExprError("empty expression / 表达式为空", rule_id=rule_id, where=where)
    if len(source) > MAX_SOURCE_CHARS:
        raise ExprError(f"expression longer than {MAX_SOURCE_CHARS} characters / 表达式过长", rule_id=rule_id, where=where)
    # Pre-check bracket depth: CPython's parser recurses and can raise MemoryError/RecursionError.
    depth = deepest = 0
    for ch in source:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise ExprError(f"expression nested too deeply (more than {MAX_DEPTH} brackets) / 嵌套过深",
                        rule_id=rule_id, where=where)
    try:
        return ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"does not parse: {exc.msg} / 表达式语法错误", rule_id=rule_id, where=where,
                        line=exc.lineno, col=(exc.offset - 1) if exc.offset else None) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExprError(f"does not parse: {type(exc).__name__} / 表达式无法解析", rule_id=rule_id, where=where) from None


def compile_expr(
    source: str,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    known_names: Iterable[str] | None = None,
    rule_id: str | None = None,
    where: str = "expr",
) -> Compiled:
    """Parse, validate and compile ``source`` once; raise :class:`ExprError` when refused.

    ``known_names``: the fact names an expression may read (None = any name). Constant
    sub-expressions are evaluated at compile time under the same bounds, so ``'a' * 10**9``
    style bombs fail at load, not at 3 a.m. in a pipeline.
    """
    functions = functions or {}
    params = params or {}
    tree = parse(source, rule_id=rule_id, where=where)
    compiler = _Compiler(source, functions, params, known_names, rule_id, where)
    compiler.check(tree)
    fn = compiler.compile(tree)
    _fold_constants(compiler, tree, functions, params)
    constant = not compiler.names and not compiler.calls
    return Compiled(source=source, fn=fn, names=frozenset(compiler.names), calls=frozenset(compiler.calls),
                    constant=constant, tree=tree)


def _fold_constants(compiler: _Compiler, tree: ast.AST, functions: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Evaluate every name-free, call-free BinOp at load so size bombs are refused there."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.BinOp):
            continue
        if any(isinstance(n, (ast.Call, ast.GeneratorExp)) for n in ast.walk(node)):
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names - set(params) - set(CONSTANT_NAMES):
            continue
        sub = _Compiler(compiler.source, functions, params, None, compiler.rule_id, compiler.where)
        closure = sub.compile(node)
        try:
            closure(Scope({}, params))
        except EvalError as exc:
            raise compiler.fail(node, f"constant expression refused: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise compiler.fail(node, f"constant expression fails: {exc}") from None


def compile_tree(tree: ast.AST, *, functions: Mapping[str, Callable[..., Any]], params: Mapping[str, Any]) -> Closure:
    """Compile an already validated tree (a batch plan's rewrite of a rule); no checks."""
    return _Compiler("", functions, params, None, None, "expr").compile(tree)


def evaluate(compiled: Compiled, facts: Mapping[str, Any], params: Mapping[str, Any] | None = None,
             memo: dict | None = None) -> Any:
    """Evaluate once; wrong types and exhausted budgets raise :class:`EvalError`."""
    scope = Scope(facts, params, memo)
    try:
        return compiled.fn(scope)
    except EvalError:
        raise
    except RecursionError as exc:  # a pathological function result; never a crash
        raise EvalError("recursion limit reached") from exc
