#requires -Version 7.0
<#
.SYNOPSIS
    Converts the help markdown in docs/help into the files Get-Help reads.
.DESCRIPTION
    Reads one platyPS-style markdown file per cmdlet (<Cmdlet-Name>.md) and about_AgentSandbox.md from
    this folder and writes, below OutputPath:

        en-US/AgentSandbox.PowerShell.dll-Help.xml   MAML for every cmdlet
        en-US/about_AgentSandbox.help.txt            the conceptual topic

    No module is needed: the markdown is parsed here. A cmdlet page that lacks a section, or a
    parameter that appears in ## SYNTAX without a ### -Parameter section, stops the script with an error.
.PARAMETER OutputPath
    The module folder to write en-US/ into (out/AgentSandbox when called from build.ps1). Defaults to
    the module/ folder of the repository.
.EXAMPLE
    & docs/help/Build-Help.ps1 -OutputPath out/AgentSandbox
#>
[CmdletBinding()]
param(
    [string] $OutputPath = (Join-Path $PSScriptRoot '../../module')
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Source = $PSScriptRoot
$HelpFileName = 'AgentSandbox.PowerShell.dll-Help.xml'
$Ns = @{
    msh     = 'http://msh'
    maml    = 'http://schemas.microsoft.com/maml/2004/10'
    command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
    dev     = 'http://schemas.microsoft.com/maml/dev/2004/10'
}

#region Markdown parsing

# Splits a document into its ## sections: name -> lines.
function Split-Sections([string[]] $Lines, [string] $Level) {
    $sections = [ordered]@{}
    $current = $null
    $inFence = $false
    foreach ($line in $Lines) {
        if ($line -match '^```') { $inFence = -not $inFence }
        if (-not $inFence -and $line -match "^$Level (.+?)\s*$") {
            $current = $Matches[1]
            $sections[$current] = [System.Collections.Generic.List[string]]::new()
        }
        elseif ($null -ne $current) { $sections[$current].Add($line) }
    }
    $sections
}

function Remove-FrontMatter([string[]] $Lines) {
    if ($Lines.Count -gt 0 -and $Lines[0] -eq '---') {
        $end = [Array]::IndexOf($Lines, '---', 1)
        if ($end -gt 0) { return $Lines[($end + 1)..($Lines.Count - 1)] }
    }
    $Lines
}

# Markdown inline text to plain text: links keep their text, emphasis and code marks go.
function ConvertTo-PlainText([string] $Text) {
    $Text = $Text -replace '\[([^\]]+)\]\([^)]*\)', '$1'
    $Text = $Text -replace '(?<!\w)\*\*([^*]+)\*\*', '$1' -replace '(?<![\w*])\*([^*]+)\*(?!\w)', '$1'
    $Text -replace '`([^`]+)`', '$1'
}

# Text lines to paragraphs: blank lines separate them, list items and fenced code stand alone.
function ConvertTo-Paragraphs([string[]] $Lines) {
    $paras = [System.Collections.Generic.List[string]]::new()
    $buffer = [System.Collections.Generic.List[string]]::new()
    $fence = $null
    $flush = {
        if ($buffer.Count -gt 0) { $paras.Add((ConvertTo-PlainText ($buffer -join ' ').Trim())); $buffer.Clear() }
    }
    foreach ($line in $Lines) {
        if ($null -ne $fence) {
            if ($line -match '^```') { $paras.Add(($fence -join "`n")); $fence = $null }
            else { $fence.Add($line) }
            continue
        }
        if ($line -match '^```') { & $flush; $fence = [System.Collections.Generic.List[string]]::new(); continue }
        if ($line -match '^\s*$') { & $flush; continue }
        if ($line -match '^\s*[-*] ') { & $flush }
        $buffer.Add($line.Trim())
    }
    & $flush
    , $paras.ToArray()
}

# The first fenced block of a section: (code lines, lines after the block).
function Split-FirstFence([string[]] $Lines) {
    $start = -1
    for ($i = 0; $i -lt $Lines.Count; $i++) { if ($Lines[$i] -match '^```') { $start = $i; break } }
    if ($start -lt 0) { return @{ Before = $Lines; Code = $null; After = @() } }
    $end = $start + 1
    while ($end -lt $Lines.Count -and $Lines[$end] -notmatch '^```') { $end++ }
    @{
        Before = if ($start -gt 0) { $Lines[0..($start - 1)] } else { @() }
        Code   = if ($end -gt $start + 1) { $Lines[($start + 1)..($end - 1)] } else { @() }
        After  = if ($end + 1 -lt $Lines.Count) { $Lines[($end + 1)..($Lines.Count - 1)] } else { @() }
    }
}

# Parameter tokens of one syntax line, in order.
function Read-SyntaxLine([string] $CommandName, [string] $Text) {
    $Text = ($Text -replace [regex]::Escape($CommandName), '').Trim()
    $tokens = [regex]::Matches($Text, '\[\[-\w+\]\s*<[^>]+>\]|\[-\w+\]\s*<[^>]+>|\[-\w+(?:\s+<[^>]+>)?\]|-\w+(?:\s+<[^>]+>)?|\[<CommonParameters>\]')
    foreach ($t in $tokens) {
        $v = $t.Value
        if ($v -eq '[<CommonParameters>]') { continue }
        $name = [regex]::Match($v, '-(\w+)').Groups[1].Value
        $type = [regex]::Match($v, '<([^>]+)>')
        [pscustomobject]@{
            Name       = $name
            Type       = if ($type.Success) { $type.Groups[1].Value } else { $null }
            Required   = -not $v.StartsWith('[') -or $v -match '^\[-\w+\]\s*<'
            Positional = $v.StartsWith('[[') -or $v -match '^\[-\w+\]\s*<'
        }
    }
}

function Read-CommandPage([string] $Path) {
    $lines = Remove-FrontMatter (Get-Content -LiteralPath $Path)
    $title = ($lines | Where-Object { $_ -match '^# ' } | Select-Object -First 1)
    if (-not $title) { throw "${Path}: no '# Cmdlet-Name' title." }
    $name = $title.Substring(2).Trim()
    $sections = Split-Sections $lines '##'
    foreach ($required in 'SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS', 'NOTES', 'RELATED LINKS') {
        if (-not $sections.Contains($required)) { throw "${Path}: section '## $required' is missing." }
    }

    # Parameters: ### -Name, description paragraphs, then a yaml block of facts.
    $parameters = [ordered]@{}
    foreach ($entry in (Split-Sections $sections['PARAMETERS'] '###').GetEnumerator()) {
        if ($entry.Key -notmatch '^-(\w+)$') { continue }   # CommonParameters
        $paramName = $Matches[1]
        $parts = Split-FirstFence $entry.Value
        $facts = @{}
        foreach ($f in @($parts.Code)) { if ($f -match '^([^:]+):\s*(.*)$') { $facts[$Matches[1].Trim()] = $Matches[2].Trim() } }
        $description = ConvertTo-Paragraphs $parts.Before
        if ($description.Count -eq 0) { throw "${Path}: parameter -$paramName has no description." }
        $parameters[$paramName] = [pscustomobject]@{
            Name        = $paramName
            Description = $description
            Type        = $facts['Type']
            Required    = $facts['Required'] -eq 'True'
            Position    = if ($facts['Position'] -and $facts['Position'] -ne 'Named') { $facts['Position'] } else { 'named' }
            Default     = $facts['Default value']
            Pipeline    = if ($facts['Accept pipeline input']) { $facts['Accept pipeline input'] } else { 'False' }
            Globbing    = $facts['Accept wildcard characters'] -eq 'True'
            Aliases     = if ($facts['Aliases']) { $facts['Aliases'] } else { 'none' }
        }
    }

    # Syntax: ### SetName [(Default)] and a code block holding the syntax line.
    $syntax = foreach ($entry in (Split-Sections $sections['SYNTAX'] '###').GetEnumerator()) {
        $code = (Split-FirstFence $entry.Value).Code
        if (-not $code) { throw "${Path}: parameter set '$($entry.Key)' has no syntax block." }
        $tokens = @(Read-SyntaxLine $name (($code | ForEach-Object Trim) -join ' '))
        foreach ($t in $tokens) {
            if (-not $parameters.Contains($t.Name)) { throw "${Path}: -$($t.Name) is in the syntax but has no '### -$($t.Name)' section." }
        }
        [pscustomobject]@{ Set = ($entry.Key -replace '\s*\(Default\)$', ''); Tokens = $tokens }
    }
    if (-not $syntax) { throw "${Path}: ## SYNTAX holds no parameter set." }

    $examples = foreach ($entry in (Split-Sections $sections['EXAMPLES'] '###').GetEnumerator()) {
        $parts = Split-FirstFence $entry.Value
        [pscustomobject]@{
            Title   = $entry.Key
            Code    = (@($parts.Code) -join "`n")
            Remarks = ConvertTo-Paragraphs $parts.After
        }
    }

    $typeList = {
        param($lines)
        foreach ($e in (Split-Sections $lines '###').GetEnumerator()) {
            [pscustomobject]@{ Type = $e.Key; Description = ConvertTo-Paragraphs $e.Value }
        }
    }

    $links = foreach ($line in $sections['RELATED LINKS']) {
        foreach ($m in [regex]::Matches($line, '\[([^\]]+)\]\(([^)]*)\)')) {
            [pscustomobject]@{ Text = $m.Groups[1].Value; Uri = if ($m.Groups[2].Value -match '^https?://') { $m.Groups[2].Value } else { '' } }
        }
    }

    [pscustomobject]@{
        Name        = $name
        Synopsis    = (ConvertTo-Paragraphs $sections['SYNOPSIS']) -join ' '
        Description = ConvertTo-Paragraphs $sections['DESCRIPTION']
        Syntax      = @($syntax)
        Parameters  = $parameters
        Examples    = @($examples)
        Inputs      = @(& $typeList $sections['INPUTS'])
        Outputs     = @(& $typeList $sections['OUTPUTS'])
        Notes       = ConvertTo-Paragraphs $sections['NOTES']
        Links       = @($links)
    }
}

#endregion

#region MAML writing

function Write-Paras([System.Xml.XmlWriter] $W, [string] $Element, [string[]] $Paras) {
    $W.WriteStartElement('maml', $Element, $Ns.maml)
    foreach ($p in $Paras) { $W.WriteElementString('maml', 'para', $Ns.maml, $p) }
    if (-not $Paras) { $W.WriteElementString('maml', 'para', $Ns.maml, '') }
    $W.WriteEndElement()
}

function Write-Parameter([System.Xml.XmlWriter] $W, $P, [bool] $Required, [bool] $InSyntax) {
    $isSwitch = $P.Type -eq 'SwitchParameter'
    $W.WriteStartElement('command', 'parameter', $Ns.command)
    $W.WriteAttributeString('required', $Required.ToString().ToLowerInvariant())
    $W.WriteAttributeString('variableLength', ($P.Type -like '*`[`]').ToString().ToLowerInvariant())
    $W.WriteAttributeString('globbing', $P.Globbing.ToString().ToLowerInvariant())
    $W.WriteAttributeString('pipelineInput', $P.Pipeline)
    $W.WriteAttributeString('position', $P.Position)
    $W.WriteAttributeString('aliases', $P.Aliases)
    $W.WriteElementString('maml', 'name', $Ns.maml, $P.Name)
    Write-Paras $W 'description' $P.Description
    if (-not ($isSwitch -and $InSyntax)) {
        $W.WriteStartElement('command', 'parameterValue', $Ns.command)
        $W.WriteAttributeString('required', (-not $isSwitch).ToString().ToLowerInvariant())
        $W.WriteAttributeString('variableLength', 'false')
        $W.WriteString($P.Type)
        $W.WriteEndElement()
    }
    $W.WriteStartElement('dev', 'type', $Ns.dev)
    $W.WriteElementString('maml', 'name', $Ns.maml, $P.Type)
    $W.WriteElementString('maml', 'uri', $Ns.maml, '')
    $W.WriteEndElement()
    $W.WriteElementString('dev', 'defaultValue', $Ns.dev, $(if ($P.Default) { $P.Default } else { 'None' }))
    $W.WriteEndElement()
}

function Write-TypeList([System.Xml.XmlWriter] $W, [string] $Outer, [string] $Inner, $Types) {
    $W.WriteStartElement('command', $Outer, $Ns.command)
    foreach ($t in $Types) {
        $W.WriteStartElement('command', $Inner, $Ns.command)
        $W.WriteStartElement('dev', 'type', $Ns.dev)
        $W.WriteElementString('maml', 'name', $Ns.maml, $t.Type)
        $W.WriteEndElement()
        Write-Paras $W 'description' $t.Description
        $W.WriteEndElement()
    }
    $W.WriteEndElement()
}

function Write-Command([System.Xml.XmlWriter] $W, $C) {
    $verb, $noun = $C.Name -split '-', 2
    $W.WriteStartElement('command', 'command', $Ns.command)
    $W.WriteAttributeString('xmlns', 'maml', $null, $Ns.maml)
    $W.WriteAttributeString('xmlns', 'command', $null, $Ns.command)
    $W.WriteAttributeString('xmlns', 'dev', $null, $Ns.dev)

    $W.WriteStartElement('command', 'details', $Ns.command)
    $W.WriteElementString('command', 'name', $Ns.command, $C.Name)
    $W.WriteElementString('command', 'verb', $Ns.command, $verb)
    $W.WriteElementString('command', 'noun', $Ns.command, $noun)
    Write-Paras $W 'description' @($C.Synopsis)
    $W.WriteEndElement()

    Write-Paras $W 'description' $C.Description

    $W.WriteStartElement('command', 'syntax', $Ns.command)
    foreach ($set in $C.Syntax) {
        $W.WriteStartElement('command', 'syntaxItem', $Ns.command)
        $W.WriteElementString('maml', 'name', $Ns.maml, $C.Name)
        foreach ($t in $set.Tokens) { Write-Parameter $W $C.Parameters[$t.Name] $t.Required $true }
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'parameters', $Ns.command)
    foreach ($p in $C.Parameters.Values) { Write-Parameter $W $p $p.Required $false }
    $W.WriteEndElement()

    Write-TypeList $W 'inputTypes' 'inputType' $C.Inputs
    Write-TypeList $W 'returnValues' 'returnValue' $C.Outputs

    $W.WriteStartElement('maml', 'alertSet', $Ns.maml)
    $W.WriteStartElement('maml', 'alert', $Ns.maml)
    foreach ($p in $C.Notes) { $W.WriteElementString('maml', 'para', $Ns.maml, $p) }
    $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'examples', $Ns.command)
    foreach ($e in $C.Examples) {
        $W.WriteStartElement('command', 'example', $Ns.command)
        $W.WriteElementString('maml', 'title', $Ns.maml, "--------- $($e.Title) ---------")
        $W.WriteElementString('dev', 'code', $Ns.dev, $e.Code)
        $W.WriteStartElement('dev', 'remarks', $Ns.dev)
        foreach ($p in $e.Remarks) { $W.WriteElementString('maml', 'para', $Ns.maml, $p) }
        $W.WriteEndElement()
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('maml', 'relatedLinks', $Ns.maml)
    foreach ($l in $C.Links) {
        $W.WriteStartElement('maml', 'navigationLink', $Ns.maml)
        $W.WriteElementString('maml', 'linkText', $Ns.maml, $l.Text)
        $W.WriteElementString('maml', 'uri', $Ns.maml, $l.Uri)
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteEndElement()
}

#endregion

#region about topic

# The about markdown as the plain text Get-Help shows: headings flush left, text indented and wrapped.
function ConvertTo-AboutText([string[]] $Lines) {
    $width = 80
    $out = [System.Collections.Generic.List[string]]::new()
    $paragraph = [System.Collections.Generic.List[string]]::new()
    $flush = {
        if ($paragraph.Count -eq 0) { return }
        $text = ConvertTo-PlainText (($paragraph -join ' ') -replace '\s+', ' ').Trim()
        $indent = '    '
        $line = $indent
        foreach ($word in $text.Split(' ')) {
            if ($line.Length + $word.Length + 1 -gt $width -and $line.Trim().Length -gt 0) { $out.Add($line.TrimEnd()); $line = $indent }
            $line += $(if ($line.Trim().Length -gt 0) { ' ' } else { '' }) + $word
        }
        $out.Add($line.TrimEnd())
        $paragraph.Clear()
    }
    $addBlank = { if ($out.Count -gt 0 -and $out[$out.Count - 1] -ne '') { $out.Add('') } }
    foreach ($line in $Lines) {
        if ($line -match '^# (.+)$') { & $flush; $out.Add('TOPIC'); $out.Add('    ' + $Matches[1].Trim()); continue }
        if ($line -match '^## (.+)$') { & $flush; & $addBlank; $out.Add($Matches[1].Trim().ToUpperInvariant()); continue }
        if ($line -match '^### (.+)$') { & $flush; & $addBlank; $out.Add('  ' + $Matches[1].Trim().ToUpperInvariant()); continue }
        if ($line -match '^```') { & $flush; continue }
        if ($line -match '^\s*$') { & $flush; & $addBlank; continue }
        if ($line -match '^    ') { & $flush; $out.Add('    ' + $line.TrimEnd()); continue }
        $paragraph.Add($line.Trim())
    }
    & $flush
    ($out -join [Environment]::NewLine).TrimEnd() + [Environment]::NewLine
}

#endregion

$pages = Get-ChildItem -LiteralPath $Source -Filter '*.md' | Where-Object Name -notlike 'about_*' | Sort-Object Name
if (-not $pages) { throw "No cmdlet help markdown found in $Source." }
$commands = foreach ($page in $pages) { Read-CommandPage $page.FullName }

$target = Join-Path $OutputPath 'en-US'
New-Item -ItemType Directory -Force -Path $target | Out-Null

$settings = [System.Xml.XmlWriterSettings]::new()
$settings.Indent = $true
$settings.Encoding = [System.Text.UTF8Encoding]::new($false)
$settings.NewLineChars = "`n"
$xmlPath = Join-Path $target $HelpFileName
$writer = [System.Xml.XmlWriter]::Create($xmlPath, $settings)
try {
    $writer.WriteStartDocument()
    $writer.WriteStartElement('helpItems', $Ns.msh)
    $writer.WriteAttributeString('schema', 'maml')
    foreach ($c in $commands) { Write-Command $writer $c }
    $writer.WriteEndElement()
    $writer.WriteEndDocument()
}
finally { $writer.Dispose() }

foreach ($about in Get-ChildItem -LiteralPath $Source -Filter 'about_*.md') {
    $text = ConvertTo-AboutText (Get-Content -LiteralPath $about.FullName)
    $aboutPath = Join-Path $target ($about.BaseName + '.help.txt')
    [System.IO.File]::WriteAllText($aboutPath, $text, [System.Text.UTF8Encoding]::new($false))
}

Write-Verbose "Help for $($commands.Count) cmdlets written to $target"
