using System.Linq;
using AgentSandbox.Processes;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class ArgvQuotingTests
    {
        public static TheoryData<string[]> TrickyArgvs => new TheoryData<string[]>
        {
            new[] { "plain" },
            new[] { "with space", "with\ttab", "" },
            new[] { "", "", "" },
            new[] { "say \"hi\"", "\"", "\"\"", "a\"b\"c" },
            new[] { "a\\\"b", "a\\\\\"b", "\\\"", "\\\\\"\\\\" },
            new[] { "trailing\\", "trailing\\\\", "sp ace\\", "\\" },
            new[] { "C:\\Program Files\\x\\", "\\\\server\\share" },
            new[] { "it's", "'", "''", "'quoted words'" },
            new[] { "ünïcödé", "日本語 テキスト", "emoji 😀", "\u00a0nbsp" },
            new[] { "line1\nline2", "\n", "cr\r\nlf", "vt\vff\f" },
            new[] { "%s", "$HOME", "`echo x`", "*", "a;b|c&d", "--", "-n" },
        };

        [Theory]
        [MemberData(nameof(TrickyArgvs))]
        public void RoundTripsThroughARealProcess(string[] args)
        {
            var argv = new[] { "%s\\0" }.Concat(args).ToArray();
            var output = ProcessRunner.Run("/usr/bin/printf", argv);
            var expected = string.Concat(args.Select(a => a + "\0"));
            Assert.Equal(expected, output);
        }

        [Theory]
        [InlineData(new[] { "abc" }, "abc")]
        [InlineData(new[] { "a", "b" }, "a b")]
        [InlineData(new[] { "" }, "\"\"")]
        [InlineData(new[] { "a b" }, "\"a b\"")]
        [InlineData(new[] { "a\"b" }, "\"a\\\"b\"")]             // a"b    -> "a\"b"
        [InlineData(new[] { "a\\\"b" }, "\"a\\\\\\\"b\"")]        // a\"b   -> "a\\\"b"
        [InlineData(new[] { "a\\\\\"b" }, "\"a\\\\\\\\\\\"b\"")]  // a\\"b  -> "a\\\\\"b"
        [InlineData(new[] { "a\\b" }, "\"a\\b\"")]                // a\b    -> "a\b" (backslash not before a quote stays single)
        [InlineData(new[] { "a\\" }, "\"a\\\\\"")]                // a\     -> "a\\"
        [InlineData(new[] { "a b\\\\" }, "\"a b\\\\\\\\\"")]      // a b\\  -> "a b\\\\"
        public void ProducesTheMsvcForm(string[] args, string expected)
        {
            Assert.Equal(expected, ArgvQuoting.Join(args));
        }

        [Fact]
        public void EmptyListIsEmptyString()
        {
            Assert.Equal("", ArgvQuoting.Join(new string[0]));
        }
    }
}
