using System;
using System.Collections;
using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell
{
    /// <summary>
    /// What a sandbox parameter (-InputObject) binds: sandboxes, and sandboxes deserialized in another
    /// process (Import-Clixml, Receive-Job, remoting), of which Name, Backend and State are kept. Any other
    /// object is refused rather than turned into an empty sandbox by setting its properties, so that
    /// PowerShell binds its Name property to -Name instead. Either way the core acts on the live record
    /// of that name: nothing else an object says is trusted.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property)]
    public sealed class SandboxTransformationAttribute : ArgumentTransformationAttribute
    {
        internal const string DeserializedType = "Deserialized.AgentSandbox.Sandbox";

        public override object Transform(EngineIntrinsics engineIntrinsics, object inputData) =>
            PipelineObjects.Each(inputData, item => item switch
            {
                Sandbox s => s,
                PSObject p when p.TypeNames.Contains(DeserializedType) => new Sandbox
                {
                    Name = PipelineObjects.Text(p, nameof(Sandbox.Name)),
                    Backend = PipelineObjects.Text(p, nameof(Sandbox.Backend)),
                    State = Enum.TryParse<SandboxState>(PipelineObjects.Text(p, nameof(Sandbox.State)), out var state) ? state : SandboxState.Stopped,
                },
                _ => throw PipelineObjects.Refused("Only sandboxes bind to -InputObject (from Get-AgentSandbox or New-AgentSandbox, here or deserialized); name others by -Name."),
            });
    }

    /// <summary>
    /// What a checkpoint parameter binds: checkpoints, and checkpoints deserialized in another process, of
    /// which the names, SandboxId and Backend are kept; the core acts on the checkpoint its backend lists.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property)]
    public sealed class CheckpointTransformationAttribute : ArgumentTransformationAttribute
    {
        internal const string DeserializedType = "Deserialized.AgentSandbox.SandboxCheckpoint";

        public override object Transform(EngineIntrinsics engineIntrinsics, object inputData) =>
            PipelineObjects.Each(inputData, item => item switch
            {
                SandboxCheckpoint c => c,
                PSObject p when p.TypeNames.Contains(DeserializedType) => new SandboxCheckpoint
                {
                    Name = PipelineObjects.Text(p, nameof(SandboxCheckpoint.Name)),
                    SandboxName = PipelineObjects.Text(p, nameof(SandboxCheckpoint.SandboxName)),
                    SandboxId = PipelineObjects.Text(p, nameof(SandboxCheckpoint.SandboxId)),
                    Backend = PipelineObjects.Text(p, nameof(SandboxCheckpoint.Backend)),
                    Keep = LanguagePrimitives.IsTrue(p.Properties[nameof(SandboxCheckpoint.Keep)]?.Value),
                    SandboxExists = LanguagePrimitives.IsTrue(p.Properties[nameof(SandboxCheckpoint.SandboxExists)]?.Value),
                },
                _ => throw PipelineObjects.Refused("Only checkpoints bind here (from Get-AgentSandboxCheckpoint or Checkpoint-AgentSandbox, here or deserialized)."),
            });
    }

    internal static class PipelineObjects
    {
        /// <summary>One object or each of a list (an array given on the command line), unwrapped from PSObject.</summary>
        internal static object Each(object input, Func<object, object> one)
        {
            object Unwrapped(object o) => o is PSObject p && !(p.BaseObject is PSCustomObject) ? p.BaseObject : o;
            var value = Unwrapped(input);
            if (value is IList list && !(value is string)) return list.Cast<object>().Select(o => one(Unwrapped(o))).ToArray();
            return one(value);
        }

        /// <summary>
        /// A cast that failed, inside the transformation's exception: only that kind lets the binder go on
        /// to the parameters bound by property name when the object comes from the pipeline.
        /// </summary>
        internal static Exception Refused(string message) =>
            new ArgumentTransformationMetadataException(message, new PSInvalidCastException(message));

        internal static string Text(PSObject p, string property) => p.Properties[property]?.Value?.ToString() ?? "";
    }
}
