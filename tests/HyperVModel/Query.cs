using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>One WHERE condition: a property, =, &lt;&gt; or LIKE, and a literal (string, number or boolean).</summary>
    internal sealed class Condition
    {
        public string Property = "";
        public string Operator = "=";
        public object Literal = "";
    }

    /// <summary>
    /// The WQL the session takes: <c>SELECT * FROM Class [WHERE P op literal [AND …]]</c>, op being =, &lt;&gt;,
    /// != or LIKE. String literals in single or double quotes with WQL's backslash escapes (\\ \' \");
    /// LIKE with %, _ and [set] (WQL LIKE operator); comparisons case-insensitive as WMI's are. Anything
    /// else (a property list, OR, NOT, parentheses) is refused as an invalid query.
    /// </summary>
    internal sealed class Query
    {
        public string ClassName = "";
        public List<Condition> Conditions = new List<Condition>();

        public static Query Parse(string wql)
        {
            var t = new Tokens(wql);
            t.Keyword("SELECT");
            if (t.Next() != "*") throw Invalid(wql, "only SELECT * is taken");
            t.Keyword("FROM");
            var q = new Query { ClassName = t.Identifier() };
            if (t.AtEnd) return q;
            t.Keyword("WHERE");
            while (true)
            {
                var c = new Condition { Property = t.Identifier() };
                var op = t.Next();
                if (op == "=" || op == "<>" || op == "!=") c.Operator = op == "!=" ? "<>" : op;
                else if (string.Equals(op, "LIKE", StringComparison.OrdinalIgnoreCase)) c.Operator = "LIKE";
                else throw Invalid(wql, $"'{op}' is not an operator the model takes");
                c.Literal = t.Literal();
                if (c.Operator == "LIKE" && !(c.Literal is string)) throw Invalid(wql, "LIKE needs a string");
                q.Conditions.Add(c);
                if (t.AtEnd) return q;
                t.Keyword("AND");
            }
        }

        private static WmiException Invalid(string wql, string why) => new WmiException(WmiFailure.InvalidQuery, $"Invalid query \"{wql}\": {why}.");

        /// <summary>Whether a value of the instance meets a condition (WMI converts a literal to the property's type).</summary>
        public static bool Matches(object? value, Condition c)
        {
            if (value is Array) return false;
            bool equal;
            if (c.Operator == "LIKE")
                return value != null && Like(CimXml.Format(value), (string)c.Literal);
            if (value == null) equal = false;
            else if (value is string s) equal = string.Equals(s, c.Literal is string l ? l : CimXml.Format(c.Literal), StringComparison.OrdinalIgnoreCase);
            else if (value is bool b) equal = c.Literal is bool lb ? b == lb : c.Literal is string ls && string.Equals(ls, b ? "true" : "false", StringComparison.OrdinalIgnoreCase);
            else if (c.Literal is string num)
                equal = decimal.TryParse(num, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d == Convert.ToDecimal(value, CultureInfo.InvariantCulture);
            else if (c.Literal is decimal n && !(value is DateTimeOffset)) equal = n == Convert.ToDecimal(value, CultureInfo.InvariantCulture);
            else equal = false;
            return c.Operator == "=" ? equal : value != null && !equal;
        }

        /// <summary>WQL LIKE: % any run, _ one character, [abc] / [a-z] / [^abc] a set; case-insensitive.</summary>
        public static bool Like(string text, string pattern) => Like(text.ToUpperInvariant(), 0, pattern.ToUpperInvariant(), 0);

        private static bool Like(string s, int i, string p, int j)
        {
            while (j < p.Length)
            {
                char c = p[j];
                if (c == '%')
                {
                    for (int k = i; k <= s.Length; k++) if (Like(s, k, p, j + 1)) return true;
                    return false;
                }
                if (i >= s.Length) return false;
                if (c == '_') { i++; j++; continue; }
                if (c == '[')
                {
                    int end = p.IndexOf(']', j + 1);
                    if (end < 0) throw new WmiException(WmiFailure.InvalidQuery, $"Invalid query: an unclosed [ in LIKE '{p}'.");
                    var set = p.Substring(j + 1, end - j - 1);
                    bool negate = set.StartsWith("^", StringComparison.Ordinal);
                    if (negate) set = set.Substring(1);
                    bool found = false;
                    for (int k = 0; k < set.Length; k++)
                    {
                        if (k + 2 < set.Length && set[k + 1] == '-') { found |= s[i] >= set[k] && s[i] <= set[k + 2]; k += 2; }
                        else found |= s[i] == set[k];
                    }
                    if (found == negate) return false;
                    i++; j = end + 1; continue;
                }
                if (s[i] != c) return false;
                i++; j++;
            }
            return i == s.Length;
        }

        private sealed class Tokens
        {
            private readonly string _text;
            private int _at;

            public Tokens(string text) { _text = text ?? ""; }

            public bool AtEnd { get { Skip(); return _at >= _text.Length; } }

            private void Skip() { while (_at < _text.Length && char.IsWhiteSpace(_text[_at])) _at++; }

            public string Next()
            {
                Skip();
                if (_at >= _text.Length) throw Invalid(_text, "it ends too soon");
                char c = _text[_at];
                if (c == '*' || c == '=') { _at++; return c.ToString(); }
                if (c == '<' || c == '!')
                {
                    if (_at + 1 < _text.Length && (_text[_at + 1] == '>' || _text[_at + 1] == '=')) { _at += 2; return _text.Substring(_at - 2, 2); }
                    throw Invalid(_text, $"'{c}' alone is no operator");
                }
                int start = _at;
                while (_at < _text.Length && (char.IsLetterOrDigit(_text[_at]) || _text[_at] == '_' || _text[_at] == '.' || _text[_at] == '-' || _text[_at] == '+')) _at++;
                if (_at == start) throw Invalid(_text, $"unexpected '{c}'");
                return _text.Substring(start, _at - start);
            }

            public void Keyword(string word)
            {
                var got = Next();
                if (!string.Equals(got, word, StringComparison.OrdinalIgnoreCase)) throw Invalid(_text, $"'{word}' expected, '{got}' found");
            }

            public string Identifier()
            {
                var name = Next();
                if (!(char.IsLetter(name[0]) || name[0] == '_') || name.IndexOf('.') >= 0 || name.IndexOf('-') >= 0 || name.IndexOf('+') >= 0)
                    throw Invalid(_text, $"'{name}' is not a name");
                foreach (var k in new[] { "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "LIKE", "ISA", "IS", "NULL" })
                    if (string.Equals(name, k, StringComparison.OrdinalIgnoreCase)) throw Invalid(_text, $"'{name}' where a name is expected");
                return name;
            }

            public object Literal()
            {
                Skip();
                if (_at >= _text.Length) throw Invalid(_text, "a value is missing");
                char q = _text[_at];
                if (q == '\'' || q == '"')
                {
                    var value = new StringBuilder();
                    _at++;
                    while (true)
                    {
                        if (_at >= _text.Length) throw Invalid(_text, "a string is not closed");
                        char c = _text[_at++];
                        if (c == q) return value.ToString();
                        if (c == '\\')
                        {
                            if (_at >= _text.Length) throw Invalid(_text, "a string ends in a lone backslash");
                            char e = _text[_at++];
                            if (e != '\\' && e != '\'' && e != '"') throw Invalid(_text, $"'\\{e}' is no WQL escape (\\\\, \\' and \\\" are)");
                            value.Append(e);
                        }
                        else value.Append(c);
                    }
                }
                var word = Next();
                if (string.Equals(word, "TRUE", StringComparison.OrdinalIgnoreCase)) return true;
                if (string.Equals(word, "FALSE", StringComparison.OrdinalIgnoreCase)) return false;
                if (decimal.TryParse(word, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n)) return n;
                throw Invalid(_text, $"'{word}' is not a value");
            }
        }
    }
}
