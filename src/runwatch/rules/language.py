"""Condition language: tokenizer and recursive-descent parser to a small AST.

Grammar (docs/rules.md)::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | primary
    primary  := "(" expr ")" | MACRO | FIELD "exists" | FIELD OP value | FIELD OP "(" value, ... ")"
                | FIELD "in" LIST
    OP       := = | != | < | <= | > | >= | contains | icontains | startswith | endswith | glob | regex | cidr

The parser knows nothing of fields, lists or macros; the compiler resolves names and checks
types. Errors raise :class:`ConditionError` carrying the index of the offending token so
the loader can map it back to a file line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Comparison operators written with symbols.
SYMBOL_OPS = ("=", "!=", "<", "<=", ">", ">=")
#: Comparison operators written as words.
WORD_OPS = ("in", "contains", "icontains", "startswith", "endswith", "glob", "regex", "cidr", "exists")
#: Operators that take a parenthesised list of values (any one matching).
LIST_OPS = frozenset({"in", "contains", "icontains", "startswith", "endswith", "glob", "regex", "cidr"})
KEYWORDS = frozenset({"and", "or", "not", *WORD_OPS})

_STOP = set(" \t\r\n(),'\"=!<>")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``(``, ``)``, ``,``, ``op``, ``str`` (quoted) or ``word``."""

    kind: str
    text: str
    pos: int
    index: int


class ConditionError(Exception):
    """A condition that does not parse; ``token`` is the index of the offending token."""

    def __init__(self, message: str, token: int | None = None, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.token = token
        self.pos = pos


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; raises :class:`ConditionError` on an unterminated string."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch in "(),":
            out.append(Token(ch, ch, i, len(out)))
            i += 1
            continue
        if ch in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in "\"'\\":
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ConditionError("unterminated string", pos=i)
            out.append(Token("str", "".join(buf), i, len(out)))
            i = j + 1
            continue
        if ch in "=!<>":
            two = text[i:i + 2]
            if two in ("!=", "<=", ">="):
                out.append(Token("op", two, i, len(out)))
                i += 2
            elif ch == "!":
                raise ConditionError("'!' must be followed by '=' (use 'not' for negation)", pos=i)
            else:
                out.append(Token("op", ch, i, len(out)))
                i += 1
            continue
        j = i
        while j < n and text[j] not in _STOP:
            j += 1
        out.append(Token("word", text[i:j], i, len(out)))
        i = j
    return out


@dataclass(frozen=True, slots=True)
class Value:
    """A literal as written: ``quoted`` strings are never numbers or list names."""

    text: str
    quoted: bool
    token: int


@dataclass(slots=True)
class Cmp:
    """``field op value(s)``. ``values`` is None for ``exists`` and for a bare list reference."""

    field: str
    op: str
    values: list[Value] | None
    list_ref: str | None
    parenthesised: bool
    token: int  # the field token
    op_token: int


@dataclass(slots=True)
class MacroRef:
    """A macro used by name."""

    name: str
    token: int


@dataclass(slots=True)
class Not:
    """Logical negation."""

    item: Node


@dataclass(slots=True)
class BoolOp:
    """``and`` / ``or`` over two or more items."""

    op: str
    items: list[Node] = field(default_factory=list)


Node = Cmp | MacroRef | Not | BoolOp


MAX_NESTING = 64
"""Levels of parentheses and ``not`` one condition may nest."""


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def deeper(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ConditionError(f"the condition nests deeper than {MAX_NESTING} levels", token=tok.index)

    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise ConditionError("unexpected end of condition", token=len(self.toks) - 1 if self.toks else None)
        self.i += 1
        return tok

    def is_word(self, tok: Token | None, *words: str) -> bool:
        return tok is not None and tok.kind == "word" and tok.text in words

    def parse(self) -> Node:
        if not self.toks:
            raise ConditionError("empty condition")
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise ConditionError(f"unexpected {tok.text!r} (expected 'and', 'or' or the end)", token=tok.index)
        return node

    def expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_word(self.peek(), "or"):
            self.i += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", items)

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.is_word(self.peek(), "and"):
            self.i += 1
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", items)

    def not_expr(self) -> Node:
        tok = self.peek()
        if tok is not None and self.is_word(tok, "not"):
            self.i += 1
            self.deeper(tok)
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "(":
            self.deeper(tok)
            node = self.expr()
            close = self.peek()
            if close is None or close.kind != ")":
                where = close.index if close is not None else tok.index
                raise ConditionError("missing ')'", token=where)
            self.i += 1
            self.depth -= 1
            return node
        if tok.kind != "word" or tok.text in KEYWORDS:
            raise ConditionError(f"expected a field or macro, found {tok.text!r}", token=tok.index)
        nxt = self.peek()
        if nxt is None or nxt.kind == ")" or self.is_word(nxt, "and", "or"):
            return MacroRef(tok.text, tok.index)
        if nxt.kind == "op" or (nxt.kind == "word" and nxt.text in WORD_OPS):
            return self.comparison(tok)
        raise ConditionError(f"unknown operator {nxt.text!r} after {tok.text!r}", token=nxt.index)

    def value(self) -> Value:
        tok = self.take()
        if tok.kind == "str":
            return Value(tok.text, True, tok.index)
        if tok.kind == "word" and tok.text not in ("and", "or", "not"):
            return Value(tok.text, False, tok.index)
        raise ConditionError(f"expected a value, found {tok.text!r}", token=tok.index)

    def comparison(self, field_tok: Token) -> Cmp:
        op_tok = self.take()
        op = op_tok.text
        if op == "exists":
            return Cmp(field_tok.text, op, None, None, False, field_tok.index, op_tok.index)
        nxt = self.peek()
        if nxt is not None and nxt.kind == "(":
            if op not in LIST_OPS:
                raise ConditionError(f"operator {op!r} takes one value, not a list", token=nxt.index)
            self.i += 1
            values = [self.value()]
            while True:
                sep = self.take()
                if sep.kind == ")":
                    break
                if sep.kind != ",":
                    raise ConditionError(f"expected ',' or ')' in list, found {sep.text!r}", token=sep.index)
                values.append(self.value())
            return Cmp(field_tok.text, op, values, None, True, field_tok.index, op_tok.index)
        val = self.value()
        if op == "in":
            if val.quoted:
                raise ConditionError("'in' takes a list: '(a, b)' or a list name", token=val.token)
            return Cmp(field_tok.text, op, None, val.text, False, field_tok.index, op_tok.index)
        return Cmp(field_tok.text, op, [val], None, False, field_tok.index, op_tok.index)


def parse_condition(text: str) -> Node:
    """Parse a condition string to its AST; raises :class:`ConditionError`."""
    return _Parser(tokenize(text)).parse()


def macro_refs(node: Node) -> list[MacroRef]:
    """Every macro reference in ``node``, in order."""
    out: list[MacroRef] = []
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, MacroRef):
            out.append(n)
        elif isinstance(n, Not):
            stack.append(n.item)
        elif isinstance(n, BoolOp):
            stack.extend(reversed(n.items))
    return out
