#Requires -RunAsAdministrator
<#
.SYNOPSIS
    hvlab Day 0: prepares this Windows VM to run a test-signed hypervisor driver under KDNET.

.DESCRIPTION
    Applies every entry of debuggee-settings.json (the same table that check-debuggee verifies):
    Defender real-time protection off, UAC off, Hyper-V/VBS/HVCI/Credential Guard off, the Debug
    Print Filter IHVDRIVER mask, test signing, kernel debugging over KDNET and a DebugView launcher.
    Idempotent: only values that differ are changed. -WhatIf shows every change and makes none.
    Ends with what changed, what you must do by hand, and whether a reboot is needed.

.EXAMPLE
    .\setup-debuggee.ps1 -HostIp 192.168.1.10 -WhatIf
.EXAMPLE
    .\setup-debuggee.ps1 -HostIp 192.168.1.10 -Port 50000 -DebugViewPath C:\Tools\Dbgview.exe
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [ValidatePattern('^\d{1,3}(\.\d{1,3}){3}$')][string]$HostIp,
    [ValidateRange(49152, 65535)][int]$Port = 50000,
    [ValidatePattern('^[0-9a-zA-Z]{1,13}(\.[0-9a-zA-Z]{1,13}){3}$')][string]$Key,
    [ValidatePattern('^(0x[0-9a-fA-F]{1,8}|\d{1,10})$')][string]$DebugPrintMask = '0xFFFF',
    [ValidatePattern('^[A-Za-z0-9_.-]{1,64}$')][string]$ServiceName = 'hv',
    [string]$DebugViewPath,
    [switch]$UseKdnet,
    [string]$SettingsPath = (Join-Path $PSScriptRoot 'debuggee-settings.json')
)
Set-StrictMode -Version 3
$ErrorActionPreference = 'Stop'

$script:Cmdlet = $PSCmdlet
$script:Changed = New-Object System.Collections.Generic.List[string]
$script:Manual = New-Object System.Collections.Generic.List[string]
$script:Reboot = $false
# {Name} in the table's wanted/fix/path fields; an empty value means "not given".
$script:Values = @{ HostIp = $HostIp; Port = "$Port"; Key = $Key; DebugPrintMask = $DebugPrintMask; ServiceName = $ServiceName }

function Expand-Param([string]$Text) {
    foreach ($name in ([regex]::Matches($Text, '\{([A-Z][A-Za-z]*)\}') | ForEach-Object { $_.Groups[1].Value })) {
        if (-not $script:Values[$name]) { return $null }
        $Text = $Text.Replace("{$name}", $script:Values[$name])
    }
    return $Text
}

function Invoke-Change([string]$What, [bool]$NeedsReboot, [scriptblock]$Action) {
    # The only place that changes the machine: -WhatIf stops every change here. $Action runs in a
    # child scope of this call (dynamic scoping), so it sees the caller's locals: no closure needed.
    if ($script:Cmdlet.ShouldProcess($What)) {
        & $Action
        $script:Changed.Add($What)
        if ($NeedsReboot) { $script:Reboot = $true }
    }
}

function ConvertTo-Dword($Value) {
    # REG_DWORD is stored as Int32 by PowerShell: map 0x80000000.. to negative numbers.
    $text = "$Value"
    if ($text -match '^0x([0-9a-fA-F]+)$') { $u = [Convert]::ToUInt32($Matches[1], 16) } else { $u = [uint32]$text }
    return [BitConverter]::ToInt32([BitConverter]::GetBytes($u), 0)
}

function Format-Current($Value) {
    if ($null -eq $Value) { return 'not set' }
    return "$Value"
}

function Get-RegPath($Entry) {
    if ($Entry.root -eq 'HKCU') { return "HKCU:\$($Entry.key)" }
    return "HKLM:\$($Entry.hive)\$($Entry.key)"
}

function Get-RegValue([string]$Path, [string]$Name) {
    $item = Get-ItemProperty -Path $Path -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $item) { return $null }
    return $item.$Name
}

function Read-BcdPairs([string[]]$Lines) {
    # English bcdedit output: "name<spaces>value" lines (see scripts/debuggee/bcdedit.py).
    $pairs = @{}
    foreach ($line in $Lines) {
        if ($line -match '^(\S+)\s+(\S.*?)\s*$') { $pairs[$Matches[1].ToLower()] = $Matches[2] }
    }
    return $pairs
}

function Set-RegistryEntry($Entry) {
    $path = Get-RegPath $Entry
    $wantedText = Expand-Param "$($Entry.wanted)"
    $wanted = ConvertTo-Dword $wantedText
    $current = Get-RegValue $path $Entry.value
    $effective = $current  # same rule as check-debuggee: a missing value means the table's "absent" default
    if ($null -eq $current -and $null -ne $Entry.absent) { $effective = ConvertTo-Dword $Entry.absent }
    $accepted = @($wanted)
    if ($Entry.PSObject.Properties['wanted_any']) { $accepted = @($Entry.wanted_any | ForEach-Object { ConvertTo-Dword $_ }) }
    if ($effective -is [int] -and $accepted -contains $effective) { return }
    if ($Entry.apply -eq 'manual') { $script:Manual.Add("$($Entry.title): $(Expand-Param $Entry.fix)"); return }
    Invoke-Change "$path\$($Entry.value) = $wantedText (was $(Format-Current $current))" $Entry.reboot {
        if (-not (Test-Path $path)) { New-Item -Path $path -Force | Out-Null }
        New-ItemProperty -Path $path -Name $Entry.value -PropertyType DWord -Value $wanted -Force | Out-Null  # the table's type: REG_DWORD
    }
}

function Set-DefenderNow {
    # The policy value persists; Set-MpPreference turns scanning off now. Tamper Protection blocks both.
    if (-not (Get-Command Get-MpComputerStatus -ErrorAction SilentlyContinue)) { return }  # no Defender module
    $mp = Get-MpComputerStatus -ErrorAction SilentlyContinue
    if ($null -eq $mp) { return }
    if ($mp.PSObject.Properties['IsTamperProtected'] -and $mp.IsTamperProtected) {  # property since 1903
        $script:Manual.Add('Tamper Protection is on and blocks the Defender change: Windows Security > Virus & threat protection > Manage settings > Tamper Protection: Off, then run this script again')
    } elseif ($mp.RealTimeProtectionEnabled) {
        Invoke-Change 'Defender real-time protection off now (Set-MpPreference)' $false {
            Set-MpPreference -DisableRealtimeMonitoring $true
        }
    }
}

function Set-BcdEntry($Entry, $Bcd) {
    $current = $Bcd[$Entry.option.ToLower()]
    if ($null -eq $current) { $current = $Entry.absent }
    if ($current -eq $Entry.wanted) { return }
    Invoke-Change "bcdedit /set {current} $($Entry.option) $($Entry.set) (was $current)" $Entry.reboot {
        $out = & bcdedit.exe /set '{current}' $Entry.option $Entry.set
        if ($LASTEXITCODE -ne 0) { throw "bcdedit /set $($Entry.option) failed: $out" }
    }
}

function Test-DbgEntry($Entry, $Dbg) {
    # True when the field already has the wanted value (or a valid one when no value was given).
    $current = $Dbg[$Entry.field.ToLower()]
    if ($null -eq $current) { return $false }
    $wanted = Expand-Param "$($Entry.wanted)"
    if ($null -eq $wanted) { return $true }
    return ($current -eq $wanted)
}

function Set-Kdnet([string[]]$Fields) {
    if (-not $HostIp) { $script:Manual.Add("KDNET ($($Fields -join ', ')): give -HostIp <WinDbg host IP> to configure it"); return }
    $kdnet = Get-Command kdnet.exe -ErrorAction SilentlyContinue
    if (-not $kdnet -and (Test-Path (Join-Path $PSScriptRoot 'kdnet.exe'))) { $kdnet = Get-Command (Join-Path $PSScriptRoot 'kdnet.exe') }
    if ($UseKdnet -and -not $kdnet) { throw '-UseKdnet: kdnet.exe is neither on PATH nor next to this script' }
    if ($kdnet -and -not $Key) {
        # kdnet.exe also checks that the NIC supports KDNET; it prints the new key.
        Invoke-Change "kdnet.exe $HostIp $Port (fields: $($Fields -join ', '))" $true {
            & $kdnet.Source $HostIp $Port | Write-Host
            if ($LASTEXITCODE -ne 0) { throw "kdnet.exe failed" }
        }
        return
    }
    $keyArg = if ($Key) { " key:$Key" } else { '' }
    Invoke-Change "bcdedit /dbgsettings net hostip:$HostIp port:$Port$keyArg (fields: $($Fields -join ', '))" $true {
        $cmdArgs = @('/dbgsettings', 'net', "hostip:$HostIp", "port:$Port")
        if ($Key) { $cmdArgs += "key:$Key" }
        $out = & bcdedit.exe @cmdArgs
        if ($LASTEXITCODE -ne 0) { throw "bcdedit /dbgsettings failed: $out" }
        $out | Write-Host   # shows Key=... : WinDbg needs it (windbg -k net:port=P,key=K)
    }
}

function Set-LauncherFile($Entry) {
    $path = [Environment]::ExpandEnvironmentVariables($Entry.path)
    $exe = $DebugViewPath
    if (-not $exe) {
        $found = Get-Command -Name @('Dbgview64.exe', 'Dbgview.exe') -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($found) { $exe = $found.Source }
    }
    if (-not $exe -or -not (Test-Path $exe)) {
        $script:Manual.Add("$($Entry.title): download DebugView (Sysinternals), then rerun with -DebugViewPath <path to Dbgview.exe>")
        return
    }
    # /k kernel capture, /v verbose kernel output, /f no filter prompt; UAC off = started elevated.
    $text = "@echo off`r`nrem hvlab: DebugView capturing kernel DbgPrintEx output`r`nstart `"`" `"$exe`" /accepteula /k /v /f`r`n"
    if ((Test-Path $path) -and ((Get-Content -Raw -Path $path) -eq $text)) { return }
    Invoke-Change "write $path (DebugView /k /v)" $Entry.reboot {
        Set-Content -Path $path -Value $text -Encoding Ascii -NoNewline
    }
}

# ---- main: walk the table --------------------------------------------------------------------
$table = Get-Content -Raw -Path $SettingsPath | ConvertFrom-Json
if ($table.format -ne 'hvlab-debuggee-settings' -or $table.version -ne 1) { throw "$SettingsPath is not a version 1 hvlab settings table" }
$bcd = Read-BcdPairs (& bcdedit.exe /enum '{current}')
$dbg = Read-BcdPairs (& bcdedit.exe /dbgsettings)
$dbgFields = New-Object System.Collections.Generic.List[string]

foreach ($entry in $table.settings) {
    switch ($entry.kind) {
        'registry' {
            Set-RegistryEntry $entry
            if ($entry.id -eq 'defender_realtime') { Set-DefenderNow }
        }
        'bcdedit' { Set-BcdEntry $entry $bcd }
        'dbgsettings' { if (-not (Test-DbgEntry $entry $dbg)) { $dbgFields.Add($entry.field) } }
        'file' { Set-LauncherFile $entry }
        'probe' { }  # observed, not set: check-debuggee reports it
        default { throw "settings table: unknown kind '$($entry.kind)' in $($entry.id)" }
    }
}
if ($dbgFields.Count -gt 0) { Set-Kdnet $dbgFields.ToArray() }

# ---- report ----------------------------------------------------------------------------------
if ($WhatIfPreference) { Write-Host 'WhatIf: nothing was changed.' }
if ($script:Changed.Count -eq 0) { Write-Host 'Nothing to change: every automatic setting is already applied.' }
else { Write-Host "Changed ($($script:Changed.Count)):"; $script:Changed | ForEach-Object { Write-Host "  $_" } }
if ($script:Manual.Count -gt 0) { Write-Host 'To do by hand:'; $script:Manual | ForEach-Object { Write-Host "  $_" } }
if ($script:Reboot) { Write-Host 'Reboot needed: boot options and VBS/UAC/filter values take effect at the next boot.' }
Write-Host 'Then verify: python check-debuggee --host-ip <WinDbg host IP>'
