"""Writing a program's steps as the source of one JAX function.

Only here do reads become text. A step that reads one array both in place and
transposed reads the transposed copy through ``relaid`` (one statement is at
least one fused XLA loop, and XLA:CPU runs a loop that reads one array in two
layouts 10 to 40 times slower than a plain addition, ``runtime.relaid``: the
symmetric part ``A + A^T`` of a Hessian is the common case); a step marked
``materialized`` is written out for its readers (``runtime.materialized``).
"""

from __future__ import annotations

from .steps import TOKEN, Read, Step, Steps


class Comment:
    """A comment line of the generated source, written only where the source is shown
    (``tg.to_source``): the program that is run needs none, and printing every
    statement's expression took a third of a 200-layer MLP's planning."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text  # a function returning the comment's text

    def __call__(self) -> str:
        return f"# {_short(self.text())}"


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spelled(read: Read, apart: bool = False) -> str:
    """A read as source: its name, transposed; ``apart``: through a copy of its own."""
    if read.perm is None:
        return read.name
    return f"relaid({read.name}, {read.perm})" if apart else f"{read.name}.transpose({read.perm})"


def statement(step: Step) -> str:
    """``name = expression`` for one step."""
    layouts: dict = {}
    for r in step.reads:
        layouts.setdefault(r.name, set()).add(r.perm)
    reads = iter(step.reads)  # in the order of the template's tokens

    def spell(_token):
        r = next(reads)
        return spelled(r, apart=len(layouts[r.name]) > 1)

    code = TOKEN.sub(spell, step.template)
    return f"{step.name} = materialized({code})" if step.materialized else f"{step.name} = {code}"


def source(steps: Steps, results: tuple, params: list, function_name: str, as_tuple: bool, comments: bool) -> str:
    """The function's source: ``params`` in, ``results`` (reads) out."""
    body = [f"dtype = jnp.result_type(float{''.join(', ' + n for n in params)})"]
    for step in steps.steps.values():
        if comments and step.comment is not None:
            body.append(step.comment())
        body.append(statement(step))
    out = [spelled(r) for r in results]
    body.append(f"return {out[0]}" if len(out) == 1 and not as_tuple else f"return ({', '.join(out)},)")
    return "\n".join([f"def {function_name}({', '.join(params)}):"] + ["    " + line for line in body]) + "\n"
