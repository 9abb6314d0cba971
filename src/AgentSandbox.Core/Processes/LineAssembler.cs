using System;
using System.Text;

namespace AgentSandbox.Processes
{
    /// <summary>
    /// Decodes a byte stream as UTF-8 (sequences split across reads included) and hands on each line
    /// as it completes, keeping the whole text as well. Not thread-safe: one reader feeds it.
    /// </summary>
    internal sealed class LineAssembler
    {
        private readonly Action<string>? _onLine;
        private readonly Decoder _decoder = new UTF8Encoding(false).GetDecoder();
        private readonly StringBuilder _all = new StringBuilder();
        private readonly StringBuilder _line = new StringBuilder();
        private char[] _chars = new char[16388];

        /// <summary>How much of the whole text is kept for results; lines still stream past it.</summary>
        public const int KeptCharacters = 16 * 1024 * 1024;

        /// <summary>
        /// The longest line handed on whole; a longer one goes on in pieces of this size, so a command that
        /// never writes a newline cannot grow the reader's memory without bound.
        /// </summary>
        public const int MaxLineCharacters = 1024 * 1024;

        public LineAssembler(Action<string>? onLine) { _onLine = onLine; }

        public string Text => _truncated ? _all + $"\n[output past {KeptCharacters} characters was streamed but not kept]\n" : _all.ToString();

        private bool _truncated;

        public void Add(byte[] bytes, int count)
        {
            if (_chars.Length < count + 4) _chars = new char[count + 4];
            int n = _decoder.GetChars(bytes, 0, count, _chars, 0);
            // A long-running command must not grow memory without bound: keep the head, stream the rest.
            int keep = Math.Min(n, KeptCharacters - _all.Length);
            if (keep > 0) _all.Append(_chars, 0, keep);
            if (keep < n) _truncated = true;
            for (int i = 0; i < n; i++)
            {
                if (_chars[i] == '\n') Emit();
                else
                {
                    _line.Append(_chars[i]);
                    if (_line.Length >= MaxLineCharacters) Emit();
                }
            }
        }

        /// <summary>Hands on a last line that had no newline.</summary>
        public void Flush()
        {
            if (_line.Length > 0) Emit();
        }

        private void Emit()
        {
            if (_line.Length > 0 && _line[_line.Length - 1] == '\r') _line.Length--;
            _onLine?.Invoke(_line.ToString());
            _line.Clear();
        }
    }
}
