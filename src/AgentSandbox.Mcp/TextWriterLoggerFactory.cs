using System;
using System.IO;
using Microsoft.Extensions.Logging;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// The SDK's own log as lines on a writer (standard error). Logging.Abstractions has no console logger,
    /// and a full logging package would be a dependency for these few lines.
    /// </summary>
    internal sealed class TextWriterLoggerFactory : ILoggerFactory
    {
        private readonly TextWriter _writer;
        private readonly LogLevel _least;

        public TextWriterLoggerFactory(TextWriter writer, LogLevel least)
        {
            _writer = TextWriter.Synchronized(writer);
            _least = least;
        }

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }

        private sealed class Logger : ILogger
        {
            private readonly TextWriterLoggerFactory _factory;
            private readonly string _category;

            public Logger(TextWriterLoggerFactory factory, string category)
            {
                _factory = factory;
                _category = category;
            }

            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => logLevel >= _factory._least;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (!IsEnabled(logLevel)) return;
                try
                {
                    // The SDK's messages quote what a client sent (a tool's name, a URI): shown inert, as the call log is.
                    _factory._writer.WriteLine(CallLog.Inert($"agentsandbox-mcp [{logLevel}] {_category}: {formatter(state, exception)}{(exception != null ? " (" + exception.GetType().Name + ": " + exception.Message + ")" : "")}"));
                    _factory._writer.Flush();
                }
                catch (IOException) { }
                catch (ObjectDisposedException) { }
            }
        }
    }
}
