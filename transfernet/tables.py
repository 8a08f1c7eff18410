"""How every report writes its numbers and Markdown tables: the score module's, the demo's,
repro-mini's, the ablation tool's and the authors' Table 1."""


def pct(value):
    """A fraction as a percentage with one decimal, 'n/a' for None."""
    return "n/a" if value is None else "%.1f" % (100 * value)


def points(value):
    """A difference of two fractions in signed percentage points, 'n/a' for None."""
    return "n/a" if value is None else "%+.1f" % (100 * value)


def num(value):
    """A measure in [0, 1] with three decimals, 'n/a' for None."""
    return "n/a" if value is None else "%.3f" % value


def markdown(header, rows):
    """The lines of a Markdown table: the header's cells, the rule, one line per row of
    cells."""
    lines = ["| %s |" % " | ".join(header), "|---" * len(header) + "|"]
    return lines + ["| %s |" % " | ".join(row) for row in rows]
